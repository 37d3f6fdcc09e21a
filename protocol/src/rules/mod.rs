//! The rules both sides enforce, written once: skill names, ids, paths
//! inside workspace roots, and relay URLs.

mod ids;
mod paths;
mod relay_url;
mod skill_name;

pub use ids::{ID_FIELDS, IdError, MAX_ID_BYTES, validate_id, validate_ids};
pub use paths::{
    ConfineError, PathError, confine, is_inside, is_inside_roots, join_path, normalize_path,
    resolve_symlinks,
};
pub use relay_url::{RelayUrlError, namespace_url, normalize_relay_url, redact_userinfo};
pub use skill_name::{SkillNameError, validate_skill_name};
