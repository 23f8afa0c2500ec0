//! What a broken answer needs to go on without taking anything back: a continuation's echo
//! recognised and skipped, and a restarted answer held against what the caller was shown —
//! its repeat swallowed, a difference found before a byte of it is handed out.
//!
//! All of it works on the accumulator's own buffers: no event is copied or re-parsed.

use super::{Accumulator, ChoiceAcc, Pending, TextField};
use std::borrow::Cow;

/// What the caller was handed of an answer that broke, per choice (lengths and text).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Shown {
    choices: Vec<ShownChoice>,
    usage: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ShownChoice {
    index: u32,
    role: bool,
    finished: bool,
    content: String,
    reasoning: String,
    refusal: String,
    /// Per tool slot: id, name, arguments.
    tools: Vec<(String, String, String)>,
}

/// Text of a choice not to hand out again (it was shown before a restart).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Hidden {
    index: u32,
    role: bool,
    finish: bool,
    content: usize,
    reasoning: usize,
    refusal: usize,
    /// Per tool slot: arguments bytes, and whether its id and name were shown.
    tools: Vec<(usize, bool)>,
}

/// A continuation's start held back while it may still be the server echoing the prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Echo {
    /// Bytes of the prefix the continuation has repeated so far.
    matched: usize,
}

/// How a restarted answer compares with what was shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Against {
    /// It repeats the shown output so far, and has not reached its end.
    Repeating,
    /// It repeated all of the shown output: what follows is new.
    CaughtUp,
    /// It says something else (or ended sooner).
    Differs,
}

/// `a` and `b` agree as far as both go.
fn agree(a: &str, b: &str) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

impl Accumulator {
    /// What has been accumulated, as shown to a caller who took every event.
    pub(crate) fn shown(&self) -> Shown {
        Shown {
            choices: self
                .choices
                .iter()
                .map(|c| ShownChoice {
                    index: c.index,
                    role: c.role.is_some(),
                    finished: c.finish_reason.is_some(),
                    content: c.content.clone(),
                    reasoning: c.reasoning.clone(),
                    refusal: c.refusal.clone(),
                    tools: c
                        .tools
                        .iter()
                        .map(|t| (t.id.clone(), t.name.clone(), t.arguments.clone()))
                        .collect(),
                })
                .collect(),
            usage: self.usage.is_some(),
        }
    }

    /// Events for what `shown` holds are not handed out again: a content delta that repeats
    /// shown text is dropped, one that goes past it is cut to the new part.
    pub(crate) fn hide(&mut self, shown: &Shown) {
        self.hidden = shown
            .choices
            .iter()
            .map(|c| Hidden {
                index: c.index,
                role: c.role,
                finish: c.finished,
                content: c.content.len(),
                reasoning: c.reasoning.len(),
                refusal: c.refusal.len(),
                tools: c
                    .tools
                    .iter()
                    .map(|(id, name, args)| (args.len(), !id.is_empty() || !name.is_empty()))
                    .collect(),
            })
            .collect();
        self.usage_hidden = shown.usage;
    }

    /// How this (restarted) answer compares with `shown`.
    pub(crate) fn against(&self, shown: &Shown) -> Against {
        let mut caught_up = true;
        for s in &shown.choices {
            let Some(c) = self.choices.iter().find(|c| c.index == s.index) else {
                caught_up = false;
                continue;
            };
            let finished = c.finish_reason.is_some() || self.done;
            let texts = [
                (c.content.as_str(), s.content.as_str()),
                (&c.reasoning, &s.reasoning),
                (&c.refusal, &s.refusal),
            ];
            for (new, old) in texts {
                if !agree(new, old) || (finished && new.len() < old.len()) {
                    return Against::Differs;
                }
                caught_up &= new.len() >= old.len();
            }
            if finished && c.tools.len() < s.tools.len() {
                return Against::Differs;
            }
            for (slot, (_, name, args)) in s.tools.iter().enumerate() {
                let Some(t) = c.tools.get(slot) else {
                    caught_up = false;
                    continue;
                };
                if !agree(&t.name, name) || !agree(&t.arguments, args) {
                    return Against::Differs;
                }
                if finished && t.arguments.len() < args.len() {
                    return Against::Differs;
                }
                caught_up &= t.arguments.len() >= args.len() && t.name.len() >= name.len();
            }
        }
        if caught_up {
            Against::CaughtUp
        } else if self.is_complete() {
            Against::Differs
        } else {
            Against::Repeating
        }
    }

    /// The restarted answer differs from what was shown: hand it out whole, from the start.
    pub(crate) fn reveal_all(&mut self) {
        self.hidden.clear();
        self.usage_hidden = false;
        self.pending.clear();
        for (at, c) in self.choices.iter().enumerate() {
            if c.role.is_some() {
                self.pending.push_back(Pending::Role { at });
            }
            for (field, text) in [
                (TextField::Reasoning, &c.reasoning),
                (TextField::Content, &c.content),
                (TextField::Refusal, &c.refusal),
            ] {
                if !text.is_empty() {
                    self.pending.push_back(Pending::Text {
                        at,
                        field,
                        start: 0,
                        end: text.len(),
                    });
                }
            }
            for (slot, t) in c.tools.iter().enumerate() {
                self.pending.push_back(Pending::ToolCall {
                    at,
                    slot,
                    start: 0,
                    end: t.arguments.len(),
                    id: !t.id.is_empty(),
                    name: !t.name.is_empty(),
                });
            }
            if c.finish_reason.is_some() {
                self.pending.push_back(Pending::Finish { at });
            }
        }
        if self.usage.is_some() {
            self.pending.push_back(Pending::Usage);
        }
    }

    /// Tool-call ids of the final response become those shown (a server gives a restarted
    /// call a new random id; the caller already holds the shown one).
    pub(crate) fn keep_shown_ids(&mut self, shown: &Shown) {
        for s in &shown.choices {
            let Some(c) = self.choices.iter_mut().find(|c| c.index == s.index) else {
                continue;
            };
            for (slot, (id, _, _)) in s.tools.iter().enumerate() {
                if let Some(t) = c.tools.get_mut(slot).filter(|_| !id.is_empty()) {
                    t.id.clone_from(id);
                }
            }
        }
    }

    /// The text a server may continue: the content of the one choice, when nothing else of
    /// the answer (reasoning, a refusal, a tool call, a second choice, a finish) makes a
    /// prefill impossible. `None` when the answer cannot be continued.
    pub(crate) fn continuable(&self) -> Option<&str> {
        let [c] = self.choices.as_slice() else {
            return None;
        };
        let alone = self.expected_choices <= 1
            && c.tools.is_empty()
            && c.refusal.is_empty()
            && c.reasoning.is_empty()
            && c.finish_reason.is_none()
            && !self.done
            && self.hidden.is_empty();
        (alone && !c.content.is_empty()).then_some(c.content.as_str())
    }

    /// A continuation follows: its text goes on from the content, unless it starts by
    /// repeating it (llama.cpp prefills and echoes), which is then skipped.
    pub(crate) fn expect_echo(&mut self) {
        for c in &mut self.choices {
            c.echo = Some(Echo::default());
        }
    }

    /// Whether [`next_event`](Self::next_event) has an event to hand out: drops the queued
    /// ones that are hidden.
    pub(crate) fn has_visible(&mut self) -> bool {
        while let Some(front) = self.pending.front() {
            if self.visible(front) {
                return true;
            }
            self.pending.pop_front();
        }
        false
    }

    /// Whether `pending` would hand out anything, after hiding.
    pub(super) fn visible(&self, pending: &Pending) -> bool {
        match *pending {
            Pending::Role { at } => !self.hidden_of(at).is_some_and(|h| h.role),
            Pending::Text { at, field, end, .. } => end > self.hidden_text(at, field),
            Pending::ToolCall {
                at,
                slot,
                end,
                id,
                name,
                ..
            } => {
                let (args, meta) = self.hidden_tool(at, slot);
                end > args || ((id || name) && !meta)
            }
            Pending::Finish { at } => !self.hidden_of(at).is_some_and(|h| h.finish),
            Pending::Usage => !self.usage_hidden,
        }
    }

    fn hidden_of(&self, at: usize) -> Option<&Hidden> {
        let index = self.choices.get(at)?.index;
        self.hidden.iter().find(|h| h.index == index)
    }

    /// Bytes of a text buffer not to hand out again.
    pub(super) fn hidden_text(&self, at: usize, field: TextField) -> usize {
        self.hidden_of(at).map_or(0, |h| match field {
            TextField::Content => h.content,
            TextField::Reasoning => h.reasoning,
            TextField::Refusal => h.refusal,
        })
    }

    /// Bytes of a tool call's arguments not to hand out again, and whether its id and name
    /// were shown.
    pub(super) fn hidden_tool(&self, at: usize, slot: usize) -> (usize, bool) {
        self.hidden_of(at)
            .and_then(|h| h.tools.get(slot).copied())
            .unwrap_or((0, false))
    }
}

impl ChoiceAcc {
    /// A content delta of a continuation, with an echo of the prefix taken off: `None`
    /// while it may still be the echo (held in `held`), the text to append otherwise.
    pub(super) fn unecho<'a>(&mut self, text: &'a str) -> Option<Cow<'a, str>> {
        let Some(echo) = &mut self.echo else {
            return Some(Cow::Borrowed(text));
        };
        let rest = self.content.get(echo.matched..).unwrap_or("");
        if rest.starts_with(text) {
            echo.matched += text.len();
            if echo.matched >= self.content.len() {
                // The whole prefix came back: an echo, skipped.
                log::debug!("the continuation echoed the prefix; skipped");
                self.echo = None;
            }
            return None;
        }
        if let Some(new) = text.strip_prefix(rest) {
            log::debug!("the continuation echoed the prefix; skipped");
            self.echo = None;
            return (!new.is_empty()).then_some(Cow::Borrowed(new));
        }
        // Not an echo: what was held back is the continuation's own start.
        let held = self.content.get(..echo.matched).unwrap_or("").to_owned();
        self.echo = None;
        Some(Cow::Owned(held + text))
    }

    /// The continuation ended while its start could still have been an echo: it was text.
    pub(super) fn release_echo(&mut self) -> Option<String> {
        let echo = self.echo.take()?;
        (echo.matched > 0).then(|| self.content.get(..echo.matched).unwrap_or("").to_owned())
    }
}
