//! Captured output with honest accounting of what was cut.

/// One captured stream of a run: the text kept, and where bytes were dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// The text kept.
    pub text: String,
    /// Cuts, in order: byte offset in `text` where bytes were dropped, and how many.
    pub cuts: Vec<Cut>,
}

/// A place where output was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// Byte offset in the kept text (always a char boundary).
    pub at: usize,
    /// Bytes dropped there.
    pub bytes: u64,
}

impl Captured {
    /// Total bytes dropped (saturating: the counts come from the guest).
    pub fn cut_bytes(&self) -> u64 {
        self.cuts
            .iter()
            .fold(0u64, |total, c| total.saturating_add(c.bytes))
    }

    /// The text with a marker at every cut, made by `marker(bytes_dropped)`.
    pub fn render(&self, marker: impl Fn(u64) -> String) -> String {
        let mut out = String::with_capacity(self.text.len() + self.cuts.len() * 48);
        let mut from = 0;
        for cut in &self.cuts {
            out.push_str(&self.text[from..cut.at]);
            out.push_str(&marker(cut.bytes));
            from = cut.at;
        }
        out.push_str(&self.text[from..]);
        out
    }

    /// Build from what the guest reported, enforcing `limit` on the host side too: a guest
    /// that sends more than it should is cut here, and a bogus cut offset is clamped.
    pub fn from_guest(mut text: String, cut: u64, cut_at: Option<u64>, limit: usize) -> Self {
        let mut cuts = Vec::new();
        if cut > 0 {
            let at = cut_at
                .and_then(|at| usize::try_from(at).ok())
                .map_or(text.len(), |at| {
                    floor_char_boundary(&text, at.min(text.len()))
                });
            cuts.push(Cut { at, bytes: cut });
        }
        if text.len() > limit {
            let keep = floor_char_boundary(&text, limit);
            let mut dropped = (text.len() - keep) as u64;
            text.truncate(keep);
            // A cut the guest reported in the part dropped here is dropped too: its bytes
            // move to the new cut rather than vanish from the count.
            cuts.retain(|c| {
                if c.at < keep {
                    return true;
                }
                dropped = dropped.saturating_add(c.bytes);
                false
            });
            cuts.push(Cut {
                at: keep,
                bytes: dropped,
            });
        }
        Self { text, cuts }
    }

    /// Append stray bytes (raw writes to the guest's fd 1 or 2), lossily decoded.
    pub fn append_stray(&mut self, stray: &CappedBytes) {
        if stray.data.is_empty() && stray.dropped == 0 {
            return;
        }
        self.text.push_str(&String::from_utf8_lossy(&stray.data));
        if stray.dropped > 0 {
            self.cuts.push(Cut {
                at: self.text.len(),
                bytes: stray.dropped,
            });
        }
    }
}

/// What a run sent of one stream while it ran (`output` frames with `keep_output`): the head
/// in full and the latest text, at most `limit` bytes together, every dropped byte counted.
/// It becomes the run's output when the run is killed before it could answer.
#[derive(Debug, Clone, Default)]
pub struct KeptOutput {
    head_limit: usize,
    tail_limit: usize,
    head: String,
    tail: String,
    /// True once text went past the head: later text goes to the tail.
    head_full: bool,
    dropped: u64,
}

impl KeptOutput {
    /// An empty keeper of at most `limit` bytes: ¾ head, ¼ latest text.
    pub fn new(limit: usize) -> Self {
        let head_limit = limit / 4 * 3;
        Self {
            head_limit,
            tail_limit: limit - head_limit,
            ..Self::default()
        }
    }

    /// Add the text of one frame, which the guest sent after dropping `skipped` bytes.
    pub fn push(&mut self, text: &str, skipped: u64) {
        let mut text = text;
        if skipped > 0 {
            self.head_full = true;
            self.dropped = self.dropped.saturating_add(skipped);
        }
        if !self.head_full {
            let room = self.head_limit - self.head.len();
            let take = floor_char_boundary(text, room.min(text.len()));
            self.head.push_str(&text[..take]);
            text = &text[take..];
            self.head_full = !text.is_empty();
        }
        self.tail.push_str(text);
        if self.tail.len() > self.tail_limit {
            let mut cut = self.tail.len() - self.tail_limit;
            while !self.tail.is_char_boundary(cut) {
                cut += 1;
            }
            self.tail.drain(..cut);
            self.dropped = self.dropped.saturating_add(cut as u64);
        }
    }

    /// The kept text, with one cut between the head and the latest text when bytes were
    /// dropped.
    pub fn into_captured(self) -> Captured {
        let at = self.head.len();
        let mut text = self.head;
        text.push_str(&self.tail);
        let cuts = if self.dropped > 0 {
            vec![Cut {
                at,
                bytes: self.dropped,
            }]
        } else {
            Vec::new()
        };
        Captured { text, cuts }
    }
}

/// A byte buffer that keeps at most `limit` bytes and counts the rest.
#[derive(Debug, Clone, Default)]
pub struct CappedBytes {
    limit: usize,
    data: Vec<u8>,
    dropped: u64,
}

impl CappedBytes {
    /// An empty buffer keeping at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            data: Vec::new(),
            dropped: 0,
        }
    }
    /// Keep what fits, count the rest.
    pub fn push(&mut self, bytes: &[u8]) {
        let room = self.limit.saturating_sub(self.data.len());
        let take = room.min(bytes.len());
        self.data.extend_from_slice(&bytes[..take]);
        self.dropped += (bytes.len() - take) as u64;
    }
    /// Bytes kept.
    pub fn len(&self) -> usize {
        self.data.len()
    }
    /// True when nothing was kept or dropped.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty() && self.dropped == 0
    }
}

fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_places_markers_at_cuts() {
        let captured = Captured::from_guest("headtail".into(), 10, Some(4), 100);
        assert_eq!(
            captured.render(|n| format!("[{n} cut]")),
            "head[10 cut]tail"
        );
    }

    #[test]
    fn host_enforces_the_limit_on_lying_guests() {
        let captured = Captured::from_guest("é".repeat(100), 0, None, 11);
        assert_eq!(captured.text.len(), 10);
        assert_eq!(captured.cut_bytes(), 190);
    }

    #[test]
    fn a_guest_cut_in_the_part_the_host_drops_is_still_counted() {
        // Found by the `guest_frames` fuzz target: the guest's cut at byte 8 fell in the
        // tail the host cut at byte 4, and its 100 bytes went missing from the count.
        let captured = Captured::from_guest("headtail".into(), 100, Some(8), 4);
        assert_eq!(captured.text, "head");
        assert_eq!(captured.cut_bytes(), 104);
        assert_eq!(captured.render(|n| format!("[{n}]")), "head[104]");
    }

    #[test]
    fn lying_cut_counts_saturate() {
        let captured = Captured::from_guest("headtail".into(), u64::MAX, Some(2), 4);
        assert_eq!(captured.cut_bytes(), u64::MAX);
    }

    #[test]
    fn kept_output_keeps_the_head_and_the_latest_text() {
        let mut kept = KeptOutput::new(16); // 12 head, 4 latest
        kept.push("0123456789", 0);
        kept.push("abcdef", 0);
        kept.push("gh", 0);
        let captured = kept.into_captured();
        assert_eq!(captured.render(|n| format!("[{n}]")), "0123456789ab[2]efgh");
    }

    #[test]
    fn kept_output_counts_what_the_guest_skipped() {
        let mut kept = KeptOutput::new(16);
        kept.push("head", 0);
        kept.push("late", 1000);
        let captured = kept.into_captured();
        assert_eq!(captured.render(|n| format!("[{n}]")), "head[1000]late");
        assert_eq!(captured.cut_bytes(), 1000);
    }

    #[test]
    fn kept_output_cuts_only_between_characters() {
        let mut kept = KeptOutput::new(12); // 9 head, 3 latest
        kept.push("ééééé", 0); // 10 bytes: 4 characters fit the head, 1 the latest text
        kept.push("€", 0); // 3 more bytes: the latest text is now the euro sign alone
        let captured = kept.into_captured();
        assert_eq!(captured.render(|n| format!("[{n}]")), "éééé[2]€");
    }

    #[test]
    fn capped_bytes_count_what_they_drop() {
        let mut buf = CappedBytes::new(4);
        buf.push(b"abcdef");
        buf.push(b"gh");
        let mut captured = Captured::default();
        captured.append_stray(&buf);
        assert_eq!(captured.render(|n| format!("<{n}>")), "abcd<4>");
    }
}
