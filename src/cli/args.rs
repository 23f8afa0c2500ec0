//! A small command-line argument scanner: `--name value`, `--name=value`, boolean flags and
//! positionals. Unknown options are usage errors (exit 2), never silently ignored.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A usage mistake: printed as one line, exit status 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The arguments after the subcommand, consumed as they are recognized.
pub struct Args {
    /// Remaining `(name, value)` options and positionals, in order.
    items: Vec<Arg>,
}

enum Arg {
    Option { name: String, value: Option<String> },
    Positional(String),
}

impl Args {
    /// Splits raw arguments. `takes_value` names the options that consume the next argument.
    pub fn parse(
        raw: impl IntoIterator<Item = String>,
        takes_value: &[&str],
    ) -> Result<Self, UsageError> {
        let mut items = Vec::new();
        let mut raw = raw.into_iter();
        let mut only_positionals = false;
        while let Some(arg) = raw.next() {
            if only_positionals || arg == "-" || !arg.starts_with('-') {
                items.push(Arg::Positional(arg));
            } else if arg == "--" {
                only_positionals = true;
            } else if let Some((name, value)) = arg.split_once('=') {
                items.push(Arg::Option {
                    name: name.to_owned(),
                    value: Some(value.to_owned()),
                });
            } else if takes_value.contains(&arg.as_str()) {
                let value = raw
                    .next()
                    .ok_or_else(|| UsageError(format!("{arg} needs a value")))?;
                items.push(Arg::Option {
                    name: arg,
                    value: Some(value),
                });
            } else {
                items.push(Arg::Option {
                    name: arg,
                    value: None,
                });
            }
        }
        Ok(Self { items })
    }

    /// Whether the boolean flag (any of `names`) was given; consumes it.
    pub fn flag(&mut self, names: &[&str]) -> Result<bool, UsageError> {
        Ok(self.count(names)? > 0)
    }

    /// How often the boolean flag (any of `names`) was given (`-v -v`); consumes it.
    pub fn count(&mut self, names: &[&str]) -> Result<u32, UsageError> {
        let mut found = 0;
        let mut err = None;
        self.items.retain(|item| match item {
            Arg::Option { name, value } if names.contains(&name.as_str()) => {
                if value.is_some() {
                    err = Some(UsageError(format!("{name} takes no value")));
                }
                found += 1;
                false
            }
            _ => true,
        });
        err.map_or(Ok(found), Err)
    }

    /// All values of a repeatable option, in order; consumes them.
    pub fn values(&mut self, names: &[&str]) -> Result<Vec<String>, UsageError> {
        let mut out = Vec::new();
        let mut err = None;
        self.items.retain(|item| match item {
            Arg::Option { name, value } if names.contains(&name.as_str()) => {
                match value {
                    Some(v) => out.push(v.clone()),
                    None => err = Some(UsageError(format!("{name} needs a value"))),
                }
                false
            }
            _ => true,
        });
        err.map_or(Ok(out), Err)
    }

    /// The last value of an option, parsed; consumes it.
    pub fn value<T: FromStr>(&mut self, names: &[&str]) -> Result<Option<T>, UsageError>
    where
        T::Err: fmt::Display,
    {
        let name = names.first().copied().unwrap_or("option");
        match self.values(names)?.pop() {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|e| UsageError(format!("invalid value {text:?} for {name}: {e}"))),
        }
    }

    /// The last value of an option as a positive number of seconds; consumes it.
    pub fn seconds(&mut self, names: &[&str]) -> Result<Option<Duration>, UsageError> {
        let name = names.first().copied().unwrap_or("option");
        match self.value::<f64>(names)? {
            None => Ok(None),
            Some(s) => Duration::try_from_secs_f64(s)
                .ok()
                .filter(|d| !d.is_zero())
                .map(Some)
                .ok_or_else(|| UsageError(format!("{name} must be a positive number of seconds"))),
        }
    }

    /// The positionals; fails on any option not consumed before.
    pub fn finish(self, max_positionals: usize) -> Result<Vec<String>, UsageError> {
        let mut positionals = Vec::new();
        for item in self.items {
            match item {
                Arg::Option { name, .. } => {
                    return Err(UsageError(format!("unknown option {name}")));
                }
                Arg::Positional(p) => positionals.push(p),
            }
        }
        if positionals.len() > max_positionals {
            return Err(UsageError(format!(
                "unexpected argument {:?}",
                positionals[max_positionals]
            )));
        }
        Ok(positionals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str], takes: &[&str]) -> Args {
        Args::parse(list.iter().map(|s| s.to_string()), takes).expect("valid")
    }

    #[test]
    fn options_flags_and_positionals() {
        let mut a = args(
            &["--chunk-size", "4", "--comments", "x", "--n=5"],
            &["--chunk-size"],
        );
        assert_eq!(
            a.value::<usize>(&["--chunk-size"])
                .expect("valid in this test"),
            Some(4)
        );
        assert_eq!(
            a.value::<u32>(&["--n"]).expect("valid in this test"),
            Some(5)
        );
        assert!(a.flag(&["--comments"]).expect("valid in this test"));
        assert_eq!(a.finish(1).expect("valid in this test"), ["x"]);
    }

    #[test]
    fn mistakes_are_usage_errors() {
        assert!(Args::parse(["--chunk-size".to_string()], &["--chunk-size"]).is_err());
        let mut a = args(&["--chunk-size", "x"], &["--chunk-size"]);
        assert!(a.value::<usize>(&["--chunk-size"]).is_err());
        assert!(args(&["--bogus"], &[]).finish(0).is_err());
        assert!(args(&["a", "b"], &[]).finish(1).is_err());
        let mut a = args(&["--comments=yes"], &[]);
        assert!(a.flag(&["--comments"]).is_err());
    }

    #[test]
    fn double_dash_and_stdin_dash_are_positionals() {
        assert_eq!(
            args(&["--", "--not-an-option"], &[])
                .finish(1)
                .expect("valid in this test"),
            ["--not-an-option"]
        );
        assert_eq!(
            args(&["-"], &[]).finish(1).expect("valid in this test"),
            ["-"]
        );
    }
}
