//! Links libgcc's unwinder statically (as `gcc -static-libgcc` does for C shared objects).
//!
//! Rust's std takes its unwinder from libgcc_s.so.1, which C hosts such as sshd, sudo and
//! login do not otherwise load: each `pam_start` would then load and unload it beside the
//! module, a large share of the module's loading cost. With `libgcc_eh.a` listed before std's
//! `-lgcc_s` and `--as-needed`, the unwinder is taken from the archive, libgcc_s leaves the
//! module's NEEDED list, and `catch_unwind` at the entry points still turns a panic into
//! PAM_SYSTEM_ERR.
//!
//! It also marks the module `-z nodelete`: libpam dlopens and dlcloses every module on each
//! pam_start/pam_end, and for a 1 MB Rust object the relocation and page faults of each fresh
//! load cost more than the authentication itself. With nodelete a host process that
//! authenticates repeatedly (a screen locker, a long-running PAM client) maps the module once;
//! a host that forks per login (sshd) pays the load once per login either way.

fn main() {
    println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
}
