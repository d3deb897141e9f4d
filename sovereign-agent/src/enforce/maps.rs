//! The kernel's enforce maps, typed (the common crate's `enforce` module says what each holds).
use aya::maps::{lpm_trie::LpmTrie, Array, HashMap, MapData};
use sovereign_agent_common::{EnforceAction, EnforceClass, EnforceKeyV4, EnforceKeyV6};

/// Taken out of the loaded object by `capture::bpf::Capture::take_enforce_maps`.
pub struct KernelMaps {
    pub on: Array<MapData, u32>,
    pub cgroups: HashMap<MapData, u64, EnforceClass>,
    pub v4: LpmTrie<MapData, EnforceKeyV4, EnforceAction>,
    pub v6: LpmTrie<MapData, EnforceKeyV6, EnforceAction>,
    pub failsafe_v4: LpmTrie<MapData, [u8; 4], u32>,
    pub failsafe_v6: LpmTrie<MapData, [u8; 16], u32>,
}
