//! Test helpers shared by the integration tests.
pub mod daemon;
pub mod pam;
/// `Store`, the one-object view of a state directory and key file that tests use: test
/// support, kept out of `common`'s API (one source with `common`'s own tests).
#[path = "../../common/tests/support/store.rs"]
pub mod store;
pub use store::Store;

/// The `--propagation` that `unshare --mount` can use here: `private`, so that nothing a
/// test mounts reaches the system, where `/` is a mount point; `unchanged` in a chroot
/// whose root is not one (there util-linux cannot change `/`, and the chroot's maker owns
/// the mount namespace around it, as a fresh test root does).
pub fn mount_propagation() -> &'static str {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if info.lines().any(|l| l.split(' ').nth(4) == Some("/")) {
        "private"
    } else {
        "unchanged"
    }
}
