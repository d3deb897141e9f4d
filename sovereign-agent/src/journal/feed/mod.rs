//! Reading the journal from a cursor, for every consumer (the API's `StreamEvents`, the sinks,
//! `tail` and the collector's own journal): the records since a sequence number, then the
//! live feed, without a gap or a duplicate ([`stream`]), filtered ([`filter`]) and sorted by
//! kind without decoding ([`peek`]). The consumers import this; it imports none of them.
pub mod filter;
pub mod peek;
pub mod stream;
