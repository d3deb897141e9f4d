pub mod datasets;
pub mod prefix;
