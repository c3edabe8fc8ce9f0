//! [`ConfigArgs`]: the settings' flags, made from the table, for every subcommand that
//! starts sandboxes.

use std::collections::BTreeMap;

use clap::builder::PossibleValuesParser;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};

use super::parse::REPEAT_SEPARATOR;
use super::{ALL, AnySetting, Arity, Setting};

/// The settings given on the command line, by variable name, as text: they are parsed with
/// the environment's values, by the same functions, in [`crate::config::resolve`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigArgs {
    given: BTreeMap<&'static str, Vec<String>>,
}

impl ConfigArgs {
    /// The text given with the setting's flag (several values of a repeatable flag are
    /// joined for its parser), or `None`.
    pub fn text<T>(&self, setting: &Setting<T>) -> Option<String> {
        self.given
            .get(setting.about().env)
            .filter(|values| !values.is_empty())
            .map(|values| values.join(&REPEAT_SEPARATOR.to_string()))
    }

    /// The same arguments with `text` given for `setting` (as its flag would; for tests and
    /// for programs that start a bridge).
    pub fn with<T>(mut self, setting: &Setting<T>, text: impl Into<String>) -> Self {
        self.given
            .entry(setting.about().env)
            .or_default()
            .push(text.into());
        self
    }

    /// The command-line flags that give these settings to another bridge process.
    pub fn to_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        for setting in ALL {
            let about = setting.about();
            let (Some(flag), Some(values)) = (about.flag, self.given.get(about.env)) else {
                continue;
            };
            for value in values {
                flags.push(format!("--{flag}"));
                if about.arity != Arity::Switch {
                    flags.push(value.clone());
                }
            }
        }
        flags
    }
}

/// The `--help` line: the setting's help, its variable and its default.
fn help_line(setting: &dyn AnySetting) -> String {
    let about = setting.about();
    format!(
        "{} [env: {}] [default: {}]",
        about.help,
        about.env,
        setting.default_shown()
    )
}

fn arg_for(setting: &'static dyn AnySetting, flag: &'static str) -> Arg {
    let about = setting.about();
    let arg = Arg::new(about.env).long(flag).help(help_line(setting));
    let arg = match about.arity {
        Arity::Switch => return arg.action(ArgAction::SetTrue),
        Arity::Many => arg.action(ArgAction::Append),
        Arity::One => arg.action(ArgAction::Set),
    };
    let arg = arg.value_name(flag.to_ascii_uppercase());
    if about.choices.is_empty() {
        arg.value_parser(move |text: &str| setting.check(text).map(|()| text.to_string()))
    } else {
        arg.ignore_case(true)
            .value_parser(PossibleValuesParser::new(about.choices))
    }
}

impl Args for ConfigArgs {
    fn augment_args(mut command: Command) -> Command {
        for setting in ALL {
            if let Some(flag) = setting.about().flag {
                command = command.arg(arg_for(*setting, flag));
            }
        }
        command
    }

    fn augment_args_for_update(command: Command) -> Command {
        Self::augment_args(command)
    }
}

impl FromArgMatches for ConfigArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = Self::default();
        args.update_from_arg_matches(matches)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        for setting in ALL {
            let about = setting.about();
            if about.flag.is_none() {
                continue;
            }
            let values: Vec<String> = if about.arity == Arity::Switch {
                if matches.get_flag(about.env) {
                    vec!["true".to_string()]
                } else {
                    Vec::new()
                }
            } else {
                matches
                    .get_many::<String>(about.env)
                    .map(|values| values.cloned().collect())
                    .unwrap_or_default()
            };
            if !values.is_empty() {
                self.given.insert(about.env, values);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::settings::{BACKEND, DISCOVERY_TOOLS, SERVERS_CONFIG, TIMEOUT};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        config: ConfigArgs,
    }

    #[test]
    fn flags_are_kept_as_text_for_the_resolver() {
        let cli = Cli::try_parse_from([
            "x",
            "--timeout",
            "5s",
            "--backend",
            "OCI",
            "--servers-config",
            "a.json",
            "--servers-config",
            "b.json",
            "--discovery-tools",
        ])
        .unwrap();
        assert_eq!(cli.config.text(&TIMEOUT).as_deref(), Some("5s"));
        assert_eq!(cli.config.text(&BACKEND).as_deref(), Some("OCI"));
        assert_eq!(
            cli.config.text(&SERVERS_CONFIG).as_deref(),
            Some("a.json\0b.json")
        );
        assert_eq!(cli.config.text(&DISCOVERY_TOOLS).as_deref(), Some("true"));
        let again =
            Cli::try_parse_from(std::iter::once("x".to_string()).chain(cli.config.to_flags()))
                .unwrap();
        assert_eq!(again.config, cli.config);
    }

    #[test]
    fn bad_values_and_unknown_choices_are_refused_by_the_flag() {
        let err = Cli::try_parse_from(["x", "--timeout", "soon"]).unwrap_err();
        assert!(err.to_string().contains("30s"), "{err}");
        let err = Cli::try_parse_from(["x", "--backend", "lxc"]).unwrap_err();
        assert!(err.to_string().contains("oci"), "{err}");
    }

    #[test]
    fn help_lists_choices_variables_and_defaults() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        assert!(
            help.contains("[possible values: wasi, podman, docker, oci]"),
            "{help}"
        );
        assert!(
            help.contains("[env: MCP_BRIDGE_TIMEOUT] [default: 30s]"),
            "{help}"
        );
        assert!(help.contains("[default: 512m]"), "{help}");
        assert!(
            !help.contains("HTTP_TOKEN"),
            "a secret is never a flag: {help}"
        );
    }
}
