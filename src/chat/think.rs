//! Reasoning that arrives inside `content`, between `<think>` and `</think>`, split off while
//! it streams.
//!
//! Servers without a reasoning parser (llama.cpp with `--reasoning-format none`, older Ollama,
//! some gateways) stream a thinking model's reasoning as ordinary content:
//! `"<think>\nLet me see</think>\n\nThe answer is 4."`, cut into deltas anywhere, tags
//! included (`"<th"`, `"ink>\nLet me"`, `" see</thi"`, `"nk>\n\nThe answer"`, ...).
//! [`ThinkSplitter`] takes those content deltas in order and hands back [`Piece`]s tagged
//! reasoning or content.
//!
//! # Rules
//!
//! - Only a block that *opens* the content counts: after optional ASCII whitespace, the
//!   first bytes must be exactly `<think>` (lowercase). As soon as they cannot be, the rest
//!   of the stream is content, passed through untouched with no tag processing at all.
//! - One block at most: after `</think>` everything is content, even another `<think>`.
//!   Inside the block `<think>` is just text (no nesting).
//! - Whitespace is dropped in three places, because models put newlines there and a
//!   reader never wants them: before the opening tag (so, when the splitter is enabled,
//!   content never starts with whitespace, think block or not), right after `<think>`, and
//!   right after `</think>`. Everything else, including whitespace before `</think>`, is
//!   passed on byte for byte. "Whitespace" is ASCII whitespace (`u8::is_ascii_whitespace`).
//! - [`ThinkSplitter::finish`] ends the stream: an unterminated block is reasoning; a tag
//!   prefix that never completed (`"<thi"`, `"</think"`) is text of the mode it was in
//!   (content before the decision); a stream of only whitespace produces nothing.
//! - Disabled ([`ThinkSplitter::new`]`(false)`), every delta passes through as content,
//!   whitespace included.
//!
//! # Holding back
//!
//! Output waits only for bytes that could still be the start of a tag, and only as long as
//! they could: in reasoning, `"abc</th"` emits `"abc"` at once and holds `"</th"`; `"a < b"`
//! holds the `"<"` only until the space shows it is not `"</think>"`, then emits it. At most
//! `len("</think>") - 1 = 7` bytes are ever held. (The simpler scheme of holding everything
//! after a literal `<` until the tag can be ruled out stalls ordinary text such as
//! `if a < b` or HTML for a whole line or longer; this one never does.)
//!
//! The held bytes are always a prefix of `<think>` or `</think>`, so the splitter stores
//! only their count and emits them from the tag constant itself: no buffer, no allocation,
//! every piece borrows from the input delta or from a `'static` tag. Pieces are cut only
//! next to ASCII bytes (`<`, tag bytes, whitespace), which are never part of a multi-byte
//! UTF-8 sequence, so no piece splits a character.

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

/// A non-empty run of text, tagged by where it belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// Text inside the `<think>` block.
    Reasoning(&'a str),
    /// Answer text.
    Content(&'a str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first non-whitespace byte or inside a possible `<think>`: `held` bytes of
    /// `OPEN` seen.
    Start,
    /// Just after `<think>`: dropping whitespace.
    ReasoningLead,
    /// Inside the block: `held` bytes of `CLOSE` seen.
    Reasoning,
    /// Just after `</think>`: dropping whitespace.
    ContentLead,
    /// Everything is content: disabled, no `<think>` at the start, or past the block.
    Content,
}

/// Splits a stream of content deltas into reasoning and content; see the [module
/// docs](self) for the rules.
#[derive(Debug, Clone)]
pub(crate) struct ThinkSplitter {
    enabled: bool,
    state: State,
    /// How many bytes of the current state's tag the input has matched so far, not yet
    /// emitted. Always less than the tag's length.
    held: usize,
}

impl ThinkSplitter {
    /// A splitter for one stream; `enabled: false` passes every delta through as content.
    pub(crate) fn new(enabled: bool) -> Self {
        Self {
            enabled,
            state: if enabled {
                State::Start
            } else {
                State::Content
            },
            held: 0,
        }
    }

    /// Feed the next content delta; `out` receives the pieces it completes, in order, never
    /// empty. Pieces borrow from `delta` or from a static tag.
    pub(crate) fn push<'a>(&mut self, delta: &'a str, mut out: impl FnMut(Piece<'a>)) {
        let bytes = delta.as_bytes();
        let mut i = 0;
        loop {
            match self.state {
                State::Content => {
                    emit(&mut out, Piece::Content(&delta[i..]));
                    return;
                }
                State::Start => {
                    if self.held == 0 {
                        i += leading_whitespace(&bytes[i..]);
                        if i == bytes.len() {
                            return;
                        }
                    }
                    match match_tag(OPEN, self.held, &bytes[i..]) {
                        TagMatch::Complete(n) => {
                            i += n;
                            self.held = 0;
                            self.state = State::ReasoningLead;
                        }
                        TagMatch::Partial(n) => {
                            self.held += n;
                            return;
                        }
                        TagMatch::Mismatch => {
                            // Not a think block: what was held and all that follows is content.
                            emit(&mut out, Piece::Content(&OPEN[..self.held]));
                            self.held = 0;
                            self.state = State::Content;
                        }
                    }
                }
                State::ReasoningLead | State::ContentLead => {
                    i += leading_whitespace(&bytes[i..]);
                    if i == bytes.len() {
                        return;
                    }
                    self.state = match self.state {
                        State::ReasoningLead => State::Reasoning,
                        _ => State::Content,
                    };
                }
                State::Reasoning => match self.reasoning(delta, i, &mut out) {
                    Some(after_close) => {
                        i = after_close;
                        self.state = State::ContentLead;
                    }
                    None => return,
                },
            }
        }
    }

    /// Emits the reasoning in `delta[i..]` up to `</think>` and returns the index just past
    /// that tag, or emits all of it (holding a trailing tag prefix) and returns `None`.
    fn reasoning<'a>(
        &mut self,
        delta: &'a str,
        mut i: usize,
        out: &mut impl FnMut(Piece<'a>),
    ) -> Option<usize> {
        let bytes = delta.as_bytes();
        let start = i;
        if self.held > 0 {
            match match_tag(CLOSE, self.held, &bytes[i..]) {
                TagMatch::Complete(n) => {
                    self.held = 0;
                    return Some(i + n);
                }
                TagMatch::Partial(n) => {
                    self.held += n;
                    return None;
                }
                TagMatch::Mismatch => {
                    // The held prefix was text; the delta's own bytes go out from `start`
                    // below, so a mismatching `<` is rescanned as a possible tag start.
                    emit(out, Piece::Reasoning(&CLOSE[..self.held]));
                    self.held = 0;
                }
            }
        }
        while let Some(off) = memchr::memchr(b'<', &bytes[i..]) {
            let lt = i + off;
            match match_tag(CLOSE, 0, &bytes[lt..]) {
                TagMatch::Complete(n) => {
                    emit(out, Piece::Reasoning(&delta[start..lt]));
                    return Some(lt + n);
                }
                TagMatch::Partial(n) => {
                    emit(out, Piece::Reasoning(&delta[start..lt]));
                    self.held = n;
                    return None;
                }
                // Text: keep it in the current piece and look for the next `<`.
                TagMatch::Mismatch => i = lt + 1,
            }
        }
        emit(out, Piece::Reasoning(&delta[start..]));
        None
    }

    /// End of stream: emit what is held (see the module docs) and reset, ready for another
    /// stream.
    pub(crate) fn finish(&mut self, mut out: impl FnMut(Piece<'static>)) {
        match self.state {
            State::Start => emit(&mut out, Piece::Content(&OPEN[..self.held])),
            State::Reasoning => emit(&mut out, Piece::Reasoning(&CLOSE[..self.held])),
            State::ReasoningLead | State::ContentLead | State::Content => {}
        }
        *self = Self::new(self.enabled);
    }
}

fn emit<'a>(out: &mut impl FnMut(Piece<'a>), piece: Piece<'a>) {
    let (Piece::Reasoning(text) | Piece::Content(text)) = piece;
    if !text.is_empty() {
        out(piece);
    }
}

fn leading_whitespace(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len())
}

/// How `input` continues a tag of which `have` bytes were already seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TagMatch {
    /// The tag is complete after `n` bytes of input.
    Complete(usize),
    /// All `n` bytes of input (possibly none) continue the tag, which is still incomplete.
    Partial(usize),
    /// The input diverges from the tag.
    Mismatch,
}

fn match_tag(tag: &str, have: usize, input: &[u8]) -> TagMatch {
    let want = tag.as_bytes().get(have..).unwrap_or_default();
    let n = want.iter().zip(input).take_while(|(w, b)| w == b).count();
    if n == want.len() {
        TagMatch::Complete(n)
    } else if n == input.len() {
        TagMatch::Partial(n)
    } else {
        TagMatch::Mismatch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, enabled, whole content, expected reasoning, expected content)
    type Case = (&'static str, bool, &'static str, &'static str, &'static str);

    const CASES: &[Case] = &[
        ("empty", true, "", "", ""),
        ("plain text", true, "Hello, world", "", "Hello, world"),
        ("only whitespace", true, " \n\t\r\n ", "", ""),
        (
            "leading whitespace of plain text",
            true,
            "\n\n Hi there",
            "",
            "Hi there",
        ),
        (
            "html at the start",
            true,
            "<b>bold</b> text",
            "",
            "<b>bold</b> text",
        ),
        ("lone lt", true, "<", "", "<"),
        ("lt then text", true, "< 3 is small", "", "< 3 is small"),
        (
            "spaced tag",
            true,
            "< think>x</think>",
            "",
            "< think>x</think>",
        ),
        ("thinking tag", true, "<thinking>x", "", "<thinking>x"),
        (
            "uppercase tag",
            true,
            "<THINK>x</THINK>y",
            "",
            "<THINK>x</THINK>y",
        ),
        ("space inside tag", true, "<think >x", "", "<think >x"),
        ("open prefix at end", true, "<thin", "", "<thin"),
        (
            "open prefix after whitespace",
            true,
            " \n<think",
            "",
            "<think",
        ),
        (
            "tag not at start",
            true,
            "Hi <think>x</think>y",
            "",
            "Hi <think>x</think>y",
        ),
        (
            "close without open",
            true,
            "</think>answer",
            "",
            "</think>answer",
        ),
        (
            "typical",
            true,
            "<think>\nLet me see</think>\n\nThe answer is 4.",
            "Let me see",
            "The answer is 4.",
        ),
        (
            "think only",
            true,
            "<think>reasoning</think>",
            "reasoning",
            "",
        ),
        ("close at the very end", true, "<think>a</think>", "a", ""),
        (
            "unterminated",
            true,
            "<think>still going",
            "still going",
            "",
        ),
        ("open tag only", true, "<think>", "", ""),
        ("open tag and whitespace", true, "<think>\n\n", "", ""),
        ("empty block", true, "<think></think>answer", "", "answer"),
        (
            "whitespace-only block",
            true,
            "<think>\n \n</think>\n\nanswer",
            "",
            "answer",
        ),
        (
            "whitespace before open",
            true,
            " \n\t<think>a</think>b",
            "a",
            "b",
        ),
        (
            "close prefix at end",
            true,
            "<think>a</think",
            "a</think",
            "",
        ),
        ("lone lt at end of reasoning", true, "<think>a<", "a<", ""),
        (
            "nested-looking open is text",
            true,
            "<think>a<think>b</think>c",
            "a<think>b",
            "c",
        ),
        (
            "second block is content",
            true,
            "<think>a</think>b<think>c</think>d",
            "a",
            "b<think>c</think>d",
        ),
        (
            "close after block is content",
            true,
            "<think>a</think>b</think>",
            "a",
            "b</think>",
        ),
        (
            "near-tags in reasoning",
            true,
            "<think>a < b, a<<b, </thinx> </ think> <//think></think>ok",
            "a < b, a<<b, </thinx> </ think> <//think>",
            "ok",
        ),
        (
            "lt right before close",
            true,
            "<think>x<</think>y",
            "x<",
            "y",
        ),
        (
            "whitespace before close is kept",
            true,
            "<think>a \n</think>b",
            "a \n",
            "b",
        ),
        (
            "content keeps inner and trailing whitespace",
            true,
            "<think>a</think>\n b  c <think> \n",
            "a",
            "b  c <think> \n",
        ),
        (
            "crlf",
            true,
            "<think>\r\na\r\n</think>\r\n\r\nb\r\n",
            "a\r\n",
            "b\r\n",
        ),
        (
            "multi-byte around tags",
            true,
            "\u{a0}<think>é中😀</think>ñ",
            "",
            "\u{a0}<think>é中😀</think>ñ",
        ),
        (
            "multi-byte inside",
            true,
            "<think>é中😀<ü</th語</think>\n語😀<x",
            "é中😀<ü</th語",
            "語😀<x",
        ),
        ("multi-byte plain", true, "日本語 < 😀", "", "日本語 < 😀"),
        (
            "disabled passes tags through",
            false,
            "<think>a</think>b",
            "",
            "<think>a</think>b",
        ),
        (
            "disabled keeps whitespace",
            false,
            " \n<think> a </think>\n",
            "",
            " \n<think> a </think>\n",
        ),
        ("disabled empty", false, "", "", ""),
        ("disabled whitespace", false, " \n ", "", " \n "),
    ];

    /// The rules applied to the whole content at once, with `str` methods: the oracle the
    /// streaming splitter must agree with.
    fn reference(input: &str, enabled: bool) -> (String, String) {
        if !enabled {
            return (String::new(), input.to_owned());
        }
        let ws = |c: char| c.is_ascii_whitespace();
        let input = input.trim_start_matches(ws);
        match input.strip_prefix(OPEN) {
            None => (String::new(), input.to_owned()),
            Some(rest) => {
                let rest = rest.trim_start_matches(ws);
                match rest.find(CLOSE) {
                    None => (rest.to_owned(), String::new()),
                    Some(at) => (
                        rest[..at].to_owned(),
                        rest[at + CLOSE.len()..].trim_start_matches(ws).to_owned(),
                    ),
                }
            }
        }
    }

    /// Output gathered from a splitter, checking the invariants every piece must meet.
    #[derive(Default)]
    struct Collected {
        reasoning: String,
        content: String,
    }

    impl Collected {
        fn take(&mut self, piece: Piece<'_>) {
            match piece {
                Piece::Reasoning(text) => {
                    assert!(!text.is_empty(), "empty reasoning piece");
                    assert!(self.content.is_empty(), "reasoning {text:?} after content");
                    self.reasoning.push_str(text);
                }
                Piece::Content(text) => {
                    assert!(!text.is_empty(), "empty content piece");
                    self.content.push_str(text);
                }
            }
        }

        fn len(&self) -> usize {
            self.reasoning.len() + self.content.len()
        }
    }

    /// Feeds `deltas` in order, then finishes. After every push, checks that what came out
    /// so far is a prefix of the reference output for the input fed so far, at most 7
    /// bytes short of it (the holdback bound).
    fn run(deltas: &[&str], enabled: bool) -> (String, String) {
        let mut splitter = ThinkSplitter::new(enabled);
        let mut got = Collected::default();
        let mut fed = String::new();
        for delta in deltas {
            splitter.push(delta, |p| got.take(p));
            fed.push_str(delta);
            let (r, c) = reference(&fed, enabled);
            assert!(
                r.starts_with(&got.reasoning) && c.starts_with(&got.content),
                "after {deltas:?} up to {fed:?}: emitted ({:?}, {:?}) is not a prefix of ({r:?}, {c:?})",
                got.reasoning,
                got.content
            );
            // Content only starts once reasoning is final.
            assert!(got.content.is_empty() || got.reasoning == r, "{deltas:?}");
            let held = r.len() + c.len() - got.len();
            assert!(
                held < CLOSE.len(),
                "after {deltas:?} up to {fed:?}: {held} bytes held back"
            );
        }
        splitter.finish(|p| got.take(p));
        (got.reasoning, got.content)
    }

    fn char_boundaries(s: &str) -> Vec<usize> {
        (0..=s.len()).filter(|&i| s.is_char_boundary(i)).collect()
    }

    /// Replays `input` whole, char by char, split in two at every boundary and in three at
    /// every pair of boundaries; every replay must give `expected`.
    fn assert_split_invariant(name: &str, input: &str, enabled: bool, expected: (&str, &str)) {
        let check = |deltas: &[&str]| {
            let (r, c) = run(deltas, enabled);
            assert_eq!(
                (r.as_str(), c.as_str()),
                expected,
                "{name}: deltas {deltas:?}"
            );
        };
        check(&[input]);
        let chars: Vec<String> = input.chars().map(String::from).collect();
        check(&chars.iter().map(String::as_str).collect::<Vec<_>>());
        let cuts = char_boundaries(input);
        for &a in &cuts {
            check(&[&input[..a], &input[a..]]);
            for &b in cuts.iter().filter(|&&b| b >= a) {
                check(&[&input[..a], &input[a..b], &input[b..]]);
            }
        }
    }

    #[test]
    fn reference_agrees_with_the_table() {
        for &(name, enabled, input, reasoning, content) in CASES {
            let (r, c) = reference(input, enabled);
            assert_eq!((r.as_str(), c.as_str()), (reasoning, content), "{name}");
        }
    }

    #[test]
    fn table_cases_whole_bytewise_and_split_everywhere() {
        for &(name, enabled, input, reasoning, content) in CASES {
            assert_split_invariant(name, input, enabled, (reasoning, content));
        }
    }

    #[test]
    fn streamed_example_from_llama_cpp() {
        let deltas = [
            "<th",
            "ink>\nLet me",
            " see</thi",
            "nk>\n\nThe answer",
            " is 4.",
        ];
        let mut splitter = ThinkSplitter::new(true);
        let mut pieces = Vec::new();
        for d in deltas {
            splitter.push(d, |p| pieces.push(p));
        }
        splitter.finish(|p| pieces.push(p));
        assert_eq!(
            pieces,
            [
                Piece::Reasoning("Let me"),
                Piece::Reasoning(" see"),
                Piece::Content("The answer"),
                Piece::Content(" is 4."),
            ]
        );
    }

    /// What each push emits at once, and what it holds back.
    #[test]
    fn holds_only_possible_tag_prefixes() {
        // (deltas, pieces emitted by each push, pieces emitted by finish)
        type Step = (
            &'static [&'static str],
            &'static [&'static [Piece<'static>]],
            &'static [Piece<'static>],
        );
        const STEPS: &[Step] = &[
            (
                &["<think>abc</th"],
                &[&[Piece::Reasoning("abc")]],
                &[Piece::Reasoning("</th")],
            ),
            (
                &["<think>a <", " b"],
                &[
                    &[Piece::Reasoning("a ")],
                    &[Piece::Reasoning("<"), Piece::Reasoning(" b")],
                ],
                &[],
            ),
            // A `<` that turns out to be text inside one delta does not cut the piece.
            (&["<think>a < b<x"], &[&[Piece::Reasoning("a < b<x")]], &[]),
            (
                &["<think>a</", "/b"],
                &[
                    &[Piece::Reasoning("a")],
                    &[Piece::Reasoning("</"), Piece::Reasoning("/b")],
                ],
                &[],
            ),
            // The mismatching byte may itself start the tag.
            (
                &["<think>a</", "</think>b"],
                &[
                    &[Piece::Reasoning("a")],
                    &[Piece::Reasoning("</"), Piece::Content("b")],
                ],
                &[],
            ),
            (&["  <thi"], &[&[]], &[Piece::Content("<thi")]),
            (
                &["  <thi", "s is"],
                &[&[], &[Piece::Content("<thi"), Piece::Content("s is")]],
                &[],
            ),
            // Decided: no holding back of a later `<`.
            (
                &["x<", "think>"],
                &[&[Piece::Content("x<")], &[Piece::Content("think>")]],
                &[],
            ),
            (&["<think>\n\n", "\n"], &[&[], &[]], &[]),
            (&["<think>a</think>\n\n"], &[&[Piece::Reasoning("a")]], &[]),
        ];
        for &(deltas, per_push, at_finish) in STEPS {
            let mut splitter = ThinkSplitter::new(true);
            for (delta, expected) in deltas.iter().zip(per_push) {
                let mut pieces = Vec::new();
                splitter.push(delta, |p| pieces.push(p));
                assert_eq!(pieces, *expected, "{deltas:?} at {delta:?}");
            }
            let mut pieces = Vec::new();
            splitter.finish(|p| pieces.push(p));
            assert_eq!(pieces, at_finish, "{deltas:?} at finish");
        }
    }

    #[test]
    fn finish_resets_for_the_next_stream() {
        for enabled in [true, false] {
            let mut splitter = ThinkSplitter::new(enabled);
            for round in 0..2 {
                let mut got = Collected::default();
                splitter.push("<think>a</th", |p| got.take(p));
                splitter.finish(|p| got.take(p));
                let expected = reference("<think>a</th", enabled);
                assert_eq!((got.reasoning, got.content), expected, "round {round}");
            }
        }
    }

    /// Every string of up to four tokens from an alphabet of tags, tag fragments,
    /// whitespace, `<`, `>` and multi-byte characters, replayed whole, char by char and
    /// split in two everywhere, against the reference.
    #[test]
    fn generated_inputs_match_the_reference() {
        const TOKENS: &[&str] = &[
            "<think>", "</think>", "<", "</th", "ink>", "<th", " ", "\n", "é", "a", ">", "/",
        ];
        let mut inputs = vec![String::new()];
        let mut frontier = inputs.clone();
        for _ in 0..4 {
            let next: Vec<String> = frontier
                .iter()
                .flat_map(|s| TOKENS.iter().map(move |t| format!("{s}{t}")))
                .collect();
            inputs.extend(next.iter().cloned());
            frontier = next;
        }
        assert_eq!(inputs.len(), 1 + 12 + 144 + 1728 + 20736);
        for input in &inputs {
            for enabled in [true, false] {
                let (r, c) = reference(input, enabled);
                let expected = (r.as_str(), c.as_str());
                let check = |deltas: &[&str]| {
                    let (gr, gc) = run(deltas, enabled);
                    assert_eq!((gr.as_str(), gc.as_str()), expected, "{deltas:?}");
                };
                check(&[input]);
                let chars: Vec<String> = input.chars().map(String::from).collect();
                check(&chars.iter().map(String::as_str).collect::<Vec<_>>());
                for a in char_boundaries(input) {
                    check(&[&input[..a], &input[a..]]);
                }
            }
        }
    }

    /// No allocation: every piece points into the delta it came from or into a tag constant.
    #[test]
    fn pieces_borrow_from_the_delta_or_a_tag() {
        let input = "<think>日本</th語<é</think>\n語😀";
        for a in char_boundaries(input) {
            let mut splitter = ThinkSplitter::new(true);
            let check = |delta: &str, piece: Piece<'_>| {
                let (Piece::Reasoning(t) | Piece::Content(t)) = piece;
                let in_delta = delta.as_bytes().as_ptr_range();
                let from_tag = [OPEN, CLOSE]
                    .iter()
                    .any(|tag| tag.as_ptr() == t.as_ptr() && tag.starts_with(t));
                assert!(
                    in_delta.contains(&t.as_ptr()) || from_tag,
                    "{t:?} at split {a}"
                );
            };
            for delta in [&input[..a], &input[a..]] {
                splitter.push(delta, |p| check(delta, p));
            }
            splitter.finish(|p| check("", p));
        }
    }
}
