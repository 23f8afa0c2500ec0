//! The requests a server saw, kept for tests to assert on, bounded.

use std::collections::VecDeque;

use serde_json::Value;

/// Most requests a server keeps for [`MockServer::requests`]; older ones are dropped so a
/// long-running `oai-sse mock` does not grow without bound. Also bounds
/// [`MockServer::deleted_streams`].
///
/// [`MockServer::requests`]: super::MockServer::requests
/// [`MockServer::deleted_streams`]: super::MockServer::deleted_streams
pub const MAX_RECORDED_REQUESTS: usize = 1000;

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request target as sent, query included.
    pub path: String,
    /// Lowercased names, in order, without `authorization`.
    pub headers: Vec<(String, String)>,
    /// Whether an `Authorization` header was sent (its value is not kept).
    pub authorization: bool,
    /// The raw body.
    pub body: Vec<u8>,
    /// The body, if it is JSON.
    pub json: Option<Value>,
    /// The connection it came on: 1 for the first the server accepted, and so on. Requests
    /// with the same number shared a keep-alive connection.
    pub connection: u64,
    /// Its number among the streamed responses (chat completions, replay `GET /v1/stream`,
    /// `/v1/events` feeds) that faults are scheduled by; `None` for other routes.
    pub streamed: Option<u64>,
    /// The server closed the connection instead of answering (the `stale` fault). Such a
    /// request is not counted or numbered by any route.
    pub dropped: bool,
}

impl RecordedRequest {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut h = self.headers.iter();
        h.find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query and without a leading `/v1`: `/chat/completions`.
    pub fn route(&self) -> &str {
        let path = self.path.split(['?', '#']).next().unwrap_or_default();
        path.strip_prefix("/v1").unwrap_or(path)
    }

    /// Whether this is a chat completion request (`POST /v1/chat/completions`).
    pub fn is_chat(&self) -> bool {
        self.method == "POST" && self.route() == "/chat/completions"
    }

    /// The JSON body's `messages` array; empty if there is none.
    pub fn messages(&self) -> &[Value] {
        let messages = self.json.as_ref().and_then(|j| j.get("messages"));
        messages
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    /// The `role` of the last message: `user`, `tool`, ...
    pub fn last_message_role(&self) -> Option<&str> {
        self.messages().last()?.get("role")?.as_str()
    }

    /// The `content` of the last message when it is a string.
    pub fn last_message_content(&self) -> Option<&str> {
        self.messages().last()?.get("content")?.as_str()
    }
}

/// The last [`MAX_RECORDED_REQUESTS`] items of a sequence and how many there were.
#[derive(Debug)]
pub(super) struct Recorded<T> {
    pub kept: VecDeque<T>,
    pub total: u64,
}

impl<T> Default for Recorded<T> {
    fn default() -> Self {
        Self {
            kept: VecDeque::new(),
            total: 0,
        }
    }
}

impl<T> Recorded<T> {
    /// Keeps `item`, dropping the oldest at the bound; returns its 1-based number.
    pub fn push(&mut self, item: T) -> u64 {
        if self.kept.len() == MAX_RECORDED_REQUESTS {
            self.kept.pop_front();
        }
        self.kept.push_back(item);
        self.total += 1;
        self.total
    }
}
