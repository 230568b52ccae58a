//! CLI failures: one line on stderr and an exit code.

use std::process::ExitCode;

/// Where bug reports go.
pub(crate) const REPORT_URL: &str = "https://github.com/cellucid-rs/cellucid-rs/issues";

/// A failure to report in one line, with its exit code.
#[derive(Debug)]
pub(crate) struct CliError {
    message: String,
    code: u8,
}

impl CliError {
    /// The user asked for something that cannot work (bad PATH, bad flag): exit 2.
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 2,
        }
    }

    /// The environment stops us (busy port, unreadable file): exit 1.
    pub(crate) fn operator(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 1,
        }
    }

    /// Prints the line and returns the exit code.
    pub(crate) fn report(&self) -> ExitCode {
        // What was logged before the failure explains it: out first.
        crate::logging::release();
        if crate::logging::is_json() {
            let code = self.code;
            tracing::error!(exit_code = code, "{}", self.message);
        } else {
            eprintln!("cellucid: error: {}", self.message);
        }
        ExitCode::from(self.code)
    }
}

/// Makes a panic print what happened and where to report it.
pub(crate) fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let text = format!(
            "cellucid: internal error: {info}\n\
             This is a bug in cellucid-rs. Please report it at {REPORT_URL} \
             with the command you ran and this message."
        );
        if crate::logging::is_json() {
            tracing::error!("{text}");
        } else {
            eprintln!("{text}");
        }
    }));
}
