//! Recognizes inference engines (SGLang, vLLM) and the ferry gate in containers, and reads their
//! command lines: `command` + `args`, or the script of an `sh -c`, split the way a shell would.

use serde_json::Value;

pub use ferry_sharder::InferenceEngine;

use crate::objects::list;

/// An engine container and its command line.
#[derive(Debug, Clone)]
pub struct EngineCommand {
    pub kind: InferenceEngine,
    /// The words after the engine's launcher (`sglang.launch_server`, `vllm serve`), or the whole
    /// command line when only the image told us it is an engine.
    pub argv: Vec<String>,
    /// Whether the launcher was seen on the command line (false: recognized by image only, as the
    /// Ray workers of a vLLM group are).
    pub launches_server: bool,
}

impl EngineCommand {
    /// The value of a flag (`--tp 8`, `--tp=8`); see [`flag_value`].
    pub fn flag(&self, names: &[&str]) -> Option<String> {
        flag_value(&self.argv, names)
    }

    /// Whether a boolean flag is present.
    pub fn has_flag(&self, name: &str) -> bool {
        self.argv.iter().any(|t| {
            let f = t.split_once('=').map_or(t.as_str(), |(f, _)| f);
            same_flag(f, name)
        })
    }

    /// A flag's integer value; None when absent or not a literal (e.g. `$(LWS_GROUP_SIZE)`).
    pub fn int_flag(&self, names: &[&str]) -> Option<u64> {
        int_flag_value(&self.argv, names)
    }

    pub fn tensor_parallel(&self) -> Option<u64> {
        self.int_flag(&["--tp", "--tp-size", "--tensor-parallel-size", "-tp"])
    }

    pub fn pipeline_parallel(&self) -> Option<u64> {
        self.int_flag(&["--pp", "--pp-size", "--pipeline-parallel-size", "-pp"])
    }

    pub fn data_parallel(&self) -> Option<u64> {
        self.int_flag(&["--dp", "--dp-size", "--data-parallel-size", "-dp"])
    }

    /// Where the engine loads weights from: `--model-path`, `--model`, or `vllm serve MODEL`.
    pub fn model(&self) -> Option<String> {
        if let Some(m) = self.flag(&["--model-path", "--model"]) {
            return Some(m);
        }
        if self.kind == InferenceEngine::Vllm && self.launches_server {
            // `vllm serve MODEL --flags`: the first word that is neither a flag nor its value.
            let first = self.argv.first()?;
            if !first.starts_with('-') {
                return Some(first.clone());
            }
        }
        None
    }

    /// The HTTP port the engine listens on.
    pub fn port(&self) -> u16 {
        self.int_flag(&["--port"])
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(self.kind.default_port())
    }

    /// GPUs the command line asks for in all: TP × PP, times DP where data parallel means more
    /// copies (SGLang's DP attention splits the TP group instead of multiplying it).
    pub fn gpus_needed(&self) -> Option<u64> {
        let tp = self.tensor_parallel();
        let pp = self.pipeline_parallel();
        let dp = self.data_parallel();
        if tp.is_none() && pp.is_none() && dp.is_none() {
            return None;
        }
        let dp_multiplies =
            !(self.kind == InferenceEngine::Sglang && self.has_flag("--enable-dp-attention"));
        let dp = if dp_multiplies { dp.unwrap_or(1) } else { 1 };
        Some(tp.unwrap_or(1) * pp.unwrap_or(1) * dp)
    }
}

/// The value of a flag in a command line (`--tp 8`, `--tp=8`); `_` and `-` are the same inside a
/// flag name, as both engines accept. The last occurrence wins, as with argparse.
pub fn flag_value(argv: &[String], names: &[&str]) -> Option<String> {
    let mut found = None;
    let mut i = 0;
    while i < argv.len() {
        let tok = &argv[i];
        let (flag, inline) = match tok.split_once('=') {
            Some((f, v)) if f.starts_with('-') => (f, Some(v)),
            _ => (tok.as_str(), None),
        };
        if flag.starts_with('-') && names.iter().any(|n| same_flag(flag, n)) {
            match inline {
                Some(v) => found = Some(v.to_string()),
                None => {
                    if let Some(v) = argv.get(i + 1) {
                        found = Some(v.clone());
                        i += 1;
                    }
                }
            }
        }
        i += 1;
    }
    found
}

/// A flag's integer value; None when absent or not a literal.
pub fn int_flag_value(argv: &[String], names: &[&str]) -> Option<u64> {
    flag_value(argv, names)?.parse().ok()
}

fn same_flag(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.replace('_', "-");
    norm(a) == norm(b)
}

/// The words a container runs: `command` then `args`.
pub fn command_line(container: &Value) -> Vec<String> {
    list(&container["command"])
        .into_iter()
        .chain(list(&container["args"]))
        .filter_map(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .collect()
}

/// The command line as separate simple commands: an `sh -c SCRIPT` is split into the commands
/// of the script (on `;`, `&&`, `||`, `|`, newlines); anything else is one command.
pub fn commands(container: &Value) -> Vec<Vec<String>> {
    let words = command_line(container);
    let is_shell = |w: &str| {
        let base = w.rsplit('/').next().unwrap_or(w);
        matches!(base, "sh" | "bash" | "dash" | "ash" | "zsh")
    };
    if let Some(pos) = words.iter().position(|w| is_shell(w)) {
        let rest = &words[pos + 1..];
        if let Some(ci) = rest
            .iter()
            .position(|w| w.starts_with('-') && !w.starts_with("--") && w.contains('c'))
        {
            if let Some(script) = rest.get(ci + 1) {
                return split_script(script);
            }
        }
    }
    vec![words]
}

/// Splits a shell script into simple commands of words. Handles quotes, backslash escapes and
/// line continuations; it does not expand anything, which the rules do not need.
pub fn split_script(script: &str) -> Vec<Vec<String>> {
    let mut cmds = Vec::new();
    let mut cur: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = script.chars().peekable();
    let end_word = |word: &mut String, in_word: &mut bool, cur: &mut Vec<String>| {
        if *in_word {
            cur.push(std::mem::take(word));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(n) => {
                    word.push(n);
                    in_word = true;
                }
            },
            '\'' => {
                in_word = true;
                for n in chars.by_ref() {
                    if n == '\'' {
                        break;
                    }
                    word.push(n);
                }
            }
            '"' => {
                in_word = true;
                while let Some(n) = chars.next() {
                    match n {
                        '"' => break,
                        '\\' => {
                            if let Some(e) = chars.next() {
                                if e != '\n' {
                                    word.push(e);
                                }
                            }
                        }
                        _ => word.push(n),
                    }
                }
            }
            ';' | '\n' | '&' | '|' => {
                end_word(&mut word, &mut in_word, &mut cur);
                if !cur.is_empty() {
                    cmds.push(std::mem::take(&mut cur));
                }
            }
            '#' if !in_word => {
                // A comment runs to the end of the line.
                for n in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
                end_word(&mut word, &mut in_word, &mut cur);
                if !cur.is_empty() {
                    cmds.push(std::mem::take(&mut cur));
                }
            }
            c if c.is_whitespace() => end_word(&mut word, &mut in_word, &mut cur),
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    end_word(&mut word, &mut in_word, &mut cur);
    if !cur.is_empty() {
        cmds.push(cur);
    }
    cmds
}

/// Recognizes an engine container: by its launcher on the command line first, by its image second.
pub fn detect(container: &Value) -> Option<EngineCommand> {
    for cmd in commands(container) {
        for (i, w) in cmd.iter().enumerate() {
            let launcher = match w.as_str() {
                "sglang.launch_server" => Some((InferenceEngine::Sglang, i + 1)),
                "vllm.entrypoints.openai.api_server" | "vllm.entrypoints.api_server" => {
                    Some((InferenceEngine::Vllm, i + 1))
                }
                // The console scripts: `vllm serve`, `sglang serve`.
                s if (s == "vllm" || s.ends_with("/vllm"))
                    && cmd.get(i + 1).map(String::as_str) == Some("serve") =>
                {
                    Some((InferenceEngine::Vllm, i + 2))
                }
                s if (s == "sglang" || s.ends_with("/sglang"))
                    && cmd.get(i + 1).map(String::as_str) == Some("serve") =>
                {
                    Some((InferenceEngine::Sglang, i + 2))
                }
                _ => None,
            };
            if let Some((kind, start)) = launcher {
                return Some(EngineCommand {
                    kind,
                    argv: cmd[start..].to_vec(),
                    launches_server: true,
                });
            }
        }
    }
    let image = container["image"]
        .as_str()
        .unwrap_or("")
        .to_ascii_lowercase();
    let repo = image.rsplit('/').next().unwrap_or("");
    let kind = if repo.starts_with("sglang") || image.contains("/sglang:") {
        InferenceEngine::Sglang
    } else if repo.starts_with("vllm") {
        InferenceEngine::Vllm
    } else {
        return None;
    };
    // The image's own entrypoint is the launcher: what we have are its arguments.
    let argv = command_line(container);
    let launches_server = container["command"].is_null();
    Some(EngineCommand {
        kind,
        argv,
        launches_server,
    })
}

/// How a ferry container gates the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    /// `sidecar`, `verify`, `fetch`, `warm`, ...
    pub verb: String,
    /// `--mode` of `ferry sidecar` (`init` when absent: the safe default for an init container).
    pub mode: Option<String>,
    /// The model directory it checks.
    pub model_dir: Option<String>,
}

/// Recognizes a ferry container and what it runs.
pub fn ferry(container: &Value) -> Option<Gate> {
    let image = container["image"].as_str().unwrap_or("");
    let by_image = image
        .rsplit('/')
        .next()
        .is_some_and(|r| r.starts_with("ferry"));
    for cmd in commands(container) {
        let start = match cmd
            .iter()
            .position(|w| w == "ferry" || w.ends_with("/ferry"))
        {
            Some(p) => p + 1,
            None if by_image => 0,
            None => continue,
        };
        let rest = &cmd[start..];
        let verb = rest.iter().find(|w| !w.starts_with('-'))?.clone();
        let model_dir = match verb.as_str() {
            "sidecar" => flag_value(rest, &["--model-dir"]),
            "fetch" => flag_value(rest, &["--to"]),
            // `ferry verify DIR`, `ferry warm DIR`: the first positional after the verb.
            _ => rest
                .iter()
                .skip_while(|w| **w != verb)
                .skip(1)
                .find(|w| !w.starts_with('-'))
                .cloned(),
        };
        return Some(Gate {
            mode: flag_value(rest, &["--mode"]),
            verb,
            model_dir,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_sglang_flags_in_both_spellings() {
        let c = json!({"command": ["python3", "-m", "sglang.launch_server"],
            "args": ["--model-path", "/models/R1", "--tp=16", "--nnodes", "$(LWS_GROUP_SIZE)"]});
        let e = detect(&c).expect("engine");
        assert_eq!(e.kind, InferenceEngine::Sglang);
        assert_eq!(e.tensor_parallel(), Some(16));
        assert_eq!(e.model().as_deref(), Some("/models/R1"));
        assert_eq!(e.flag(&["--nnodes"]).as_deref(), Some("$(LWS_GROUP_SIZE)"));
        assert_eq!(e.int_flag(&["--nnodes"]), None);
        assert_eq!(e.port(), 30000);
    }

    #[test]
    fn reads_vllm_serve_inside_a_shell_script() {
        let c = json!({"image": "vllm/vllm-openai:v0.10.1", "command": ["sh", "-c"],
            "args": ["ray start --head; vllm serve /models/R1 --port 8080 \\\n --tensor_parallel_size 8 --pipeline-parallel-size=2 # two nodes"]});
        let e = detect(&c).expect("engine");
        assert_eq!(e.kind, InferenceEngine::Vllm);
        assert!(e.launches_server);
        assert_eq!(e.model().as_deref(), Some("/models/R1"));
        assert_eq!(e.gpus_needed(), Some(16));
        assert_eq!(e.port(), 8080);
    }

    #[test]
    fn dp_attention_does_not_multiply_gpus() {
        let c = json!({"args": ["python3", "-m", "sglang.launch_server", "--tp", "16", "--dp", "16", "--enable-dp-attention"]});
        assert_eq!(detect(&c).unwrap().gpus_needed(), Some(16));
        let c = json!({"args": ["vllm", "serve", "m", "--tp", "2", "--dp", "4"]});
        assert_eq!(detect(&c).unwrap().gpus_needed(), Some(8));
    }

    #[test]
    fn image_alone_marks_a_ray_worker_as_an_engine() {
        let c = json!({"image": "vllm/vllm-openai:v0.10.1", "command": ["sh", "-c", "ray start --block --address=$(LWS_LEADER_ADDRESS):6379"]});
        let e = detect(&c).expect("engine");
        assert!(!e.launches_server);
        assert_eq!(e.model(), None);
        assert!(detect(&json!({"image": "busybox", "command": ["sleep", "1"]})).is_none());
    }

    #[test]
    fn recognizes_the_ferry_gate() {
        let c = json!({"image": "ghcr.io/x/ferry:0.1.0", "args": ["sidecar", "--model-dir=/models/R1", "--mode", "serve"]});
        let g = ferry(&c).expect("gate");
        assert_eq!(g.verb, "sidecar");
        assert_eq!(g.mode.as_deref(), Some("serve"));
        assert_eq!(g.model_dir.as_deref(), Some("/models/R1"));
        let c =
            json!({"image": "alpine", "command": ["/usr/local/bin/ferry", "verify", "/models/R1"]});
        assert_eq!(ferry(&c).unwrap().model_dir.as_deref(), Some("/models/R1"));
        assert!(ferry(&json!({"image": "alpine", "command": ["ls"]})).is_none());
    }

    #[test]
    fn script_splitting_honors_quotes() {
        let cmds = split_script("a 'b c' \"d \\\"e\\\"\" && f;g | h");
        assert_eq!(
            cmds,
            vec![vec!["a", "b c", "d \"e\""], vec!["f"], vec!["g"], vec!["h"]]
        );
    }
}
