//! Continuing a final assistant message ("prefill"), sans-IO: which requests ask for it, and
//! how a server of each kind answers them.
//!
//! A request that ends with `{"role":"assistant","content":PREFIX}` asks the model to go on
//! from PREFIX. vLLM and llama.cpp do so when the request also says
//! `"continue_final_message": true, "add_generation_prompt": false`: greedy decoding then
//! produces exactly the rest of the reply it would have given. llama.cpp without those flags
//! prefills too, but its reply starts with PREFIX again. A server without the feature takes
//! the assistant message for a past turn and answers afresh. A client resuming a cut stream
//! this way must tell the three apart; [`Continuation`] lets the mock be each of them.

use serde_json::Value;

/// What the mock does with a request whose last message is the assistant's, with string
/// content PREFIX ([`Replies::continuation`](super::Replies::continuation)).
///
/// | mode | which requests | the reply |
/// |---|---|---|
/// | [`Continues`](Self::Continues) | flagged `"continue_final_message": true, "add_generation_prompt": false` | the script's reply after PREFIX |
/// | [`Echoes`](Self::Echoes) | any, flags or not | PREFIX (one content chunk), then the script's reply after PREFIX |
/// | [`Ignores`](Self::Ignores) (default) | none | the script's whole reply, as for any request |
///
/// "After PREFIX" means: when PREFIX is a prefix of the script's reply text, the content
/// pieces of the uncut reply from where PREFIX ends (the piece PREFIX ends inside is sent from
/// there on, the following words as ever), then the tool calls. When it is not (a model asked
/// to continue someone else's text says something else), the script's whole text and tool
/// calls. Either way a prefilled reply has no reasoning: the prefill means the thinking is
/// over.
///
/// A prefilled reply's `usage.completion_tokens` counts only what was generated (not an
/// echoed PREFIX); `prompt_tokens` counts every message, PREFIX included.
///
/// Continuation is for one choice: a request the mode would prefill that asks for `n` > 1
/// choices is answered `400` "Only one completion choice is allowed" (llama.cpp's answer to
/// any `n` > 1), generates nothing and uses up no script. Requests the mode does not prefill
/// are answered as always, with one choice whatever their `n`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Continuation {
    /// Honours `continue_final_message` (vLLM, llama.cpp): a flagged request gets only the
    /// rest of the reply; an unflagged one is answered afresh.
    Continues,
    /// Prefills every final assistant message and repeats PREFIX at the start of the reply
    /// (llama.cpp without the flags).
    Echoes,
    /// No prefill: the assistant message is a past turn (today's servers without the
    /// feature, and the mock's default).
    #[default]
    Ignores,
}

/// llama.cpp's answer to a request for more than one choice.
pub(super) const ONE_CHOICE: &str = "Only one completion choice is allowed";

/// How one reply continues a final assistant message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Prefill<'a> {
    /// The final assistant message's content.
    pub prefix: &'a str,
    /// Send `prefix` again as the reply's first content piece.
    pub echo: bool,
}

impl Continuation {
    /// The prefill a server of this kind applies to `request`; `None` when it answers afresh.
    pub(super) fn prefill(self, request: &Value) -> Option<Prefill<'_>> {
        let last = request.get("messages")?.as_array()?.last()?;
        if last.get("role").and_then(Value::as_str) != Some("assistant") {
            return None;
        }
        let prefix = last.get("content")?.as_str()?;
        let flag = |name| request.get(name).and_then(Value::as_bool);
        let flagged = flag("continue_final_message") == Some(true)
            && flag("add_generation_prompt") == Some(false);
        match self {
            Self::Continues if flagged => Some(Prefill {
                prefix,
                echo: false,
            }),
            Self::Echoes => Some(Prefill { prefix, echo: true }),
            _ => None,
        }
    }

    /// Why `request` is refused: a prefill for more than one choice.
    pub(super) fn refusal(self, request: &Value) -> Option<&'static str> {
        let choices = request.get("n").and_then(Value::as_u64).unwrap_or(1);
        (choices > 1 && self.prefill(request).is_some()).then_some(ONE_CHOICE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ending_with(last: Value, flags: Value) -> Value {
        let mut request = json!({"model": "m", "stream": true,
            "messages": [{"role": "user", "content": "hi"}, last]});
        for (k, v) in flags.as_object().into_iter().flatten() {
            request[k] = v.clone();
        }
        request
    }

    #[test]
    fn mock_continuation_applies_to_a_final_assistant_message() {
        use Continuation::{Continues, Echoes, Ignores};
        let assistant = json!({"role": "assistant", "content": "Hel"});
        let flags = json!({"continue_final_message": true, "add_generation_prompt": false});
        let cont = |prefix| {
            Some(Prefill {
                prefix,
                echo: false,
            })
        };
        let echo = |prefix| Some(Prefill { prefix, echo: true });
        let cases = [
            (Continues, assistant.clone(), flags.clone(), cont("Hel")),
            (Continues, assistant.clone(), json!({}), None),
            (
                Continues,
                assistant.clone(),
                json!({"continue_final_message": true}),
                None,
            ),
            (
                Continues,
                assistant.clone(),
                json!({"continue_final_message": true, "add_generation_prompt": true}),
                None,
            ),
            (
                Continues,
                json!({"role": "assistant", "content": null,
                       "tool_calls": [{"id": "c", "type": "function",
                                       "function": {"name": "f", "arguments": "{}"}}]}),
                flags.clone(),
                None,
            ),
            (
                Continues,
                json!({"role": "user", "content": "Hel"}),
                flags.clone(),
                None,
            ),
            (
                Continues,
                json!({"role": "assistant", "content": ""}),
                flags.clone(),
                cont(""),
            ),
            (Echoes, assistant.clone(), json!({}), echo("Hel")),
            (Echoes, assistant.clone(), flags.clone(), echo("Hel")),
            (Ignores, assistant.clone(), flags.clone(), None),
        ];
        for (mode, last, flags, want) in cases {
            let request = ending_with(last, flags);
            assert_eq!(mode.prefill(&request), want, "{mode:?} {request}");
        }
    }

    #[test]
    fn mock_continuation_is_for_one_choice() {
        let flags = json!({"continue_final_message": true, "add_generation_prompt": false,
                           "n": 2});
        let request = ending_with(json!({"role": "assistant", "content": "Hel"}), flags);
        assert_eq!(Continuation::Continues.refusal(&request), Some(ONE_CHOICE));
        assert_eq!(Continuation::Echoes.refusal(&request), Some(ONE_CHOICE));
        assert_eq!(Continuation::Ignores.refusal(&request), None);
        let user_last = json!({"model": "m", "n": 3,
                               "messages": [{"role": "user", "content": "hi"}]});
        assert_eq!(Continuation::Echoes.refusal(&user_last), None);
        let mut one = request.clone();
        one["n"] = json!(1);
        assert_eq!(Continuation::Continues.refusal(&one), None);
    }
}
