//! Choosing the cache directory and refusing one that is not dedicated.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use crate::error::ProxyError;

/// The environment variable naming a persistent cache directory.
pub const CACHE_DIR_ENV: &str = "CELLUCID_WEB_PROXY_CACHE_DIR";

/// Why a cache directory was chosen (printed by `cellucid cache dir`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheDirOrigin {
    /// `--web-cache-dir`.
    Flag,
    /// `CELLUCID_WEB_PROXY_CACHE_DIR`.
    Env,
    /// `$XDG_CACHE_HOME/cellucid/web`.
    XdgCacheHome,
    /// `~/.cache/cellucid/web`.
    Home,
}

impl fmt::Display for CacheDirOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Flag => "given with --web-cache-dir",
            Self::Env => "from the environment variable CELLUCID_WEB_PROXY_CACHE_DIR",
            Self::XdgCacheHome => "the user cache dir: $XDG_CACHE_HOME/cellucid/web",
            Self::Home => "the user cache dir: ~/.cache/cellucid/web ($XDG_CACHE_HOME is unset)",
        })
    }
}

/// A validated cache directory: absolute, dedicated, not a symlink. It may
/// not exist yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheDir {
    path: PathBuf,
    origin: CacheDirOrigin,
}

/// What the resolution reads from the process: injectable for tests.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// `CELLUCID_WEB_PROXY_CACHE_DIR`.
    pub cache_dir_var: Option<PathBuf>,
    /// `XDG_CACHE_HOME`.
    pub xdg_cache_home: Option<PathBuf>,
    /// `HOME`.
    pub home: Option<PathBuf>,
    /// The working directory.
    pub cwd: Option<PathBuf>,
}

impl Environment {
    /// The real process environment; empty variables count as unset.
    pub fn current() -> Self {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Self {
            cache_dir_var: var(CACHE_DIR_ENV),
            xdg_cache_home: var("XDG_CACHE_HOME"),
            home: var("HOME"),
            cwd: std::env::current_dir().ok(),
        }
    }
}

impl CacheDir {
    /// Chooses the cache directory: `flag`, else the environment variable,
    /// else the user cache dir; then checks it is safe to own.
    ///
    /// # Errors
    /// [`ProxyError::NoCacheDir`] when nothing names one;
    /// [`ProxyError::UnsafeCacheDir`] when the choice is refused.
    pub fn resolve(flag: Option<&Path>, env: &Environment) -> Result<Self, ProxyError> {
        let (path, origin) = if let Some(path) = flag {
            (path.to_path_buf(), CacheDirOrigin::Flag)
        } else if let Some(path) = &env.cache_dir_var {
            (path.clone(), CacheDirOrigin::Env)
        } else if let Some(xdg) = env.xdg_cache_home.as_ref().filter(|p| p.is_absolute()) {
            (xdg.join("cellucid/web"), CacheDirOrigin::XdgCacheHome)
        } else if let Some(home) = &env.home {
            (home.join(".cache/cellucid/web"), CacheDirOrigin::Home)
        } else {
            return Err(ProxyError::NoCacheDir);
        };
        let path = absolute(
            &expand_tilde(&path, env.home.as_deref()),
            env.cwd.as_deref(),
        );
        check_dedicated(&path, env)?;
        Ok(Self { path, origin })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why it was chosen.
    pub fn origin(&self) -> &CacheDirOrigin {
        &self.origin
    }
}

fn expand_tilde(path: &Path, home: Option<&Path>) -> PathBuf {
    match (path.strip_prefix("~"), home) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => path.to_path_buf(),
    }
}

/// `path` made absolute against `cwd` and cleaned lexically (`.` and `..`
/// removed), without touching the filesystem.
fn absolute(path: &Path, cwd: Option<&Path>) -> PathBuf {
    let joined = match cwd {
        Some(cwd) if path.is_relative() => cwd.join(path),
        _ => path.to_path_buf(),
    };
    let mut out = PathBuf::new();
    for component in joined.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Refuses a directory the cache must not own: a symlink or a non-directory,
/// the filesystem root, or anything that is (or contains) the working
/// directory or the home directory, compared both as written and with
/// symlinks resolved. `cellucid cache clear` relies on this.
fn check_dedicated(path: &Path, env: &Environment) -> Result<(), ProxyError> {
    let refuse = |why: String| ProxyError::UnsafeCacheDir {
        path: path.to_path_buf(),
        why,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(refuse(
                "it is a symbolic link; name the real directory instead".to_owned(),
            ))
        }
        Ok(meta) if !meta.is_dir() => {
            return Err(refuse("it exists and is not a directory".to_owned()))
        }
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(ProxyError::unwritable(path, err)),
    }
    if !path.is_absolute() || path.parent().is_none() {
        return Err(refuse(
            "it is the filesystem root; use a dedicated directory such as ~/.cache/cellucid/web"
                .to_owned(),
        ));
    }
    let resolved = resolve_existing_prefix(path);
    let protected = [
        (env.home.as_deref(), "your home directory"),
        (env.cwd.as_deref(), "the working directory"),
    ];
    for (dir, what) in protected {
        let Some(dir) = dir else { continue };
        let dir_abs = absolute(dir, env.cwd.as_deref());
        let dir_resolved = resolve_existing_prefix(&dir_abs);
        for (candidate, protected_dir) in [
            (path, &dir_abs),
            (path, &dir_resolved),
            (resolved.as_path(), &dir_abs),
            (resolved.as_path(), &dir_resolved),
        ] {
            if protected_dir.starts_with(candidate) {
                return Err(refuse(format!(
                    "it is {what} or contains it ({}); the cache dir must be dedicated to the viewer UI, e.g. ~/.cache/cellucid/web",
                    dir.display()
                )));
            }
        }
    }
    Ok(())
}

/// `path` with symlinks resolved in the longest existing prefix (the rest
/// appended as written).
fn resolve_existing_prefix(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut out = real;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (
            existing.file_name().map(ToOwned::to_owned),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_in(tmp: &Path) -> Environment {
        Environment {
            cache_dir_var: None,
            xdg_cache_home: None,
            home: Some(tmp.join("home/user")),
            cwd: Some(tmp.join("work")),
        }
    }

    #[test]
    fn the_flag_wins_then_the_variable_then_xdg_then_home() {
        let tmp = tempfile::tempdir().unwrap();
        let mut env = env_in(tmp.path());
        let flag = tmp.path().join("flag");
        let dir = CacheDir::resolve(Some(&flag), &env).unwrap();
        assert_eq!(
            (dir.path(), dir.origin()),
            (flag.as_path(), &CacheDirOrigin::Flag)
        );
        let home = CacheDir::resolve(None, &env).unwrap();
        assert_eq!(
            home.path(),
            tmp.path().join("home/user/.cache/cellucid/web")
        );
        assert_eq!(home.origin(), &CacheDirOrigin::Home);
        env.xdg_cache_home = Some(tmp.path().join("xdg"));
        let xdg = CacheDir::resolve(None, &env).unwrap();
        assert_eq!(xdg.path(), tmp.path().join("xdg/cellucid/web"));
        env.cache_dir_var = Some(PathBuf::from("rel/cache"));
        let var = CacheDir::resolve(None, &env).unwrap();
        assert_eq!(var.path(), tmp.path().join("work/rel/cache"));
        assert_eq!(var.origin(), &CacheDirOrigin::Env);
    }

    #[test]
    fn home_cwd_their_parents_and_root_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let env = env_in(tmp.path());
        std::fs::create_dir_all(tmp.path().join("home/user")).unwrap();
        std::fs::create_dir_all(tmp.path().join("work")).unwrap();
        for bad in [
            PathBuf::from("/"),
            tmp.path().join("home/user"),
            tmp.path().join("home"),
            tmp.path().join("home/user/.."),
            tmp.path().join("work"),
            PathBuf::from("."),
            PathBuf::from("~"),
        ] {
            let err = CacheDir::resolve(Some(&bad), &env).unwrap_err();
            assert!(
                matches!(err, ProxyError::UnsafeCacheDir { .. }),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn a_symlink_to_home_or_a_symlinked_cache_dir_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let env = env_in(tmp.path());
        std::fs::create_dir_all(tmp.path().join("home/user")).unwrap();
        let link = tmp.path().join("link-to-home");
        std::os::unix::fs::symlink(tmp.path().join("home/user"), &link).unwrap();
        assert!(CacheDir::resolve(Some(&link), &env).is_err());
        // A path through a symlinked parent that lands on home's parent.
        let up = tmp.path().join("up");
        std::os::unix::fs::symlink(tmp.path().join("home"), &up).unwrap();
        assert!(CacheDir::resolve(Some(&up.join("user")), &env).is_err());
        let file = tmp.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(CacheDir::resolve(Some(&file), &env).is_err());
        assert!(CacheDir::resolve(Some(&tmp.path().join("home/user/.cache/x")), &env).is_ok());
    }
}
