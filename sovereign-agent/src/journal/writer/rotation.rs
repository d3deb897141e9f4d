//! Segment rotation (by size and age; each sealed into its successor) and retention (the
//! oldest segments deleted by age and total size, the deletion itself recorded).
use super::*;

impl JournalWriter {
    pub(super) fn maybe_rotate(&mut self) -> Result<(), JournalError> {
        let has_records = self.offset > HEADER_LEN as u64;
        let age = SystemTime::now()
            .duration_since(self.segment_created)
            .unwrap_or_default();
        if has_records
            && (self.offset >= self.opts.segment_max_bytes || age >= self.opts.segment_max_age)
        {
            self.rotate()?;
        }
        Ok(())
    }

    /// Seals the open segment into the header of a new one, then applies retention.
    pub fn rotate(&mut self) -> Result<(), JournalError> {
        self.sync()?;
        let head = format::head_of(&self.chain);
        let signature = self.opts.signing_key.as_ref().map(|k| {
            k.sign(&format::seal_message(self.segment, self.next_seq, &head))
                .to_bytes()
        });
        let (path, chain) = create_segment(
            &self.opts.dir,
            self.segment + 1,
            self.next_seq,
            head,
            signature,
        )?;
        self.file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        self.path = path;
        self.segment += 1;
        self.segment_created = SystemTime::now();
        self.offset = HEADER_LEN as u64;
        self.chain = chain;
        self.stats.rotations += 1;
        self.checkpoint()?;
        self.apply_retention()
    }

    /// Deletes the oldest sealed segments beyond the age and size limits. The deletion is
    /// recorded (and synced) first, so a journal never misses segments without saying so.
    fn apply_retention(&mut self) -> Result<(), JournalError> {
        if self.opts.retention_max_age.is_none() && self.opts.retention_max_bytes.is_none() {
            return Ok(());
        }
        let dir = self.opts.dir.clone();
        let segments = list_segments(&dir)?;
        let mut sizes = Vec::with_capacity(segments.len());
        for (index, path) in &segments {
            let meta = fs::metadata(path).map_err(io_err(path))?;
            sizes.push((*index, path.clone(), meta.len(), meta.modified().ok()));
        }
        let mut total: u64 = sizes.iter().map(|s| s.2).sum();
        let now = SystemTime::now();
        let mut doomed = Vec::new();
        let mut reason = "";
        for (index, path, size, modified) in &sizes {
            if *index >= self.segment {
                break;
            }
            let too_old = match (self.opts.retention_max_age, modified) {
                (Some(max), Some(m)) => now.duration_since(*m).unwrap_or_default() > max,
                _ => false,
            };
            let too_big = self.opts.retention_max_bytes.is_some_and(|max| total > max);
            if !(too_old || too_big) {
                break;
            }
            reason = if too_old { "age" } else { "size" };
            total -= size;
            doomed.push((*index, path.clone(), *size));
        }
        let (Some(first), Some(last)) = (doomed.first(), doomed.last()) else {
            return Ok(());
        };
        // The seal of the last deleted segment is in the header of the one after it.
        let next = format::segment_path(&dir, last.0 + 1);
        let mut header = [0u8; HEADER_LEN];
        File::open(&next)
            .and_then(|f| f.read_exact_at(&mut header, 0))
            .map_err(io_err(&next))?;
        let next_header = SegmentHeader::decode(&header).map_err(|e| JournalError::Segment {
            path: next.clone(),
            offset: 0,
            message: e.to_string(),
        })?;
        let bytes: u64 = doomed.iter().map(|d| d.2).sum();
        let record = Event::Lifecycle(Box::new(LifecycleEvent::now(Lifecycle::JournalRetention {
            first_segment: first.0,
            last_segment: last.0,
            last_seq: next_header.first_seq.saturating_sub(1),
            last_head: format::hex(&next_header.prev_head),
            bytes,
            reason: reason.to_string(),
        })));
        self.append(std::slice::from_ref(&record))?;
        self.sync()?;
        for (index, path, _) in &doomed {
            fs::remove_file(path).map_err(io_err(path))?;
            self.stats.segments_deleted += 1;
            tracing::info!(
                segment = index,
                reason,
                "journal retention deleted a segment"
            );
        }
        fsync_dir(&dir)
    }
}
