//! A bounded on-disk queue of batches, so that telemetry for InfluxDB
//! survives an outage of the server and a restart of the daemon.
//!
//! Segments `seg-NNNNNNNNNNNN.log` hold frames `[len u32][crc32 u32][batch]`
//! (little-endian). Every start opens a new segment, so nothing is ever
//! appended after a torn frame. The reader's position is kept in `cursor`
//! (segment and offset, replaced atomically after each batch is sent). A
//! frame whose length or checksum does not hold (power lost mid-write) ends
//! its segment: it is counted and the reader goes on with the next. Past
//! `max_bytes` the oldest segments are deleted, sent or not, and counted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const SEGMENT_BYTES: u64 = 8 << 20;
const MAX_FRAME: u32 = 64 << 20;

/// What is at a position of the spool.
enum Read {
    Frame(Vec<u8>, Cursor),
    EndOfSegment,
    /// Torn, corrupt, or (in the segment being written) not all there yet.
    Bad,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    pub segment: u64,
    pub offset: u64,
}

/// What the spool had to give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Losses {
    /// Bytes of whole segments deleted over the quota before they were sent.
    pub dropped_bytes: u64,
    /// Torn or corrupt frames skipped.
    pub torn_frames: u64,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// The segments before the head still on disk, and their lengths: read from the folder
    /// once at open, then kept up to date, so that no push or commit lists the folder.
    closed: std::collections::BTreeMap<u64, u64>,
    /// The segment being written, and its length.
    head: u64,
    head_len: u64,
    writer: File,
    cursor: Cursor,
    pub losses: Losses,
}

fn seg_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("seg-{n:012}.log"))
}

fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let name = e?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name.strip_prefix("seg-").and_then(|r| r.strip_suffix(".log")).and_then(|n| n.parse().ok()) {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

impl Spool {
    /// Opens (creating) the spool in `dir`, starting a new segment for what is written from now on.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let segs = segments(dir)?;
        let head = segs.last().map_or(1, |n| n + 1);
        let writer = OpenOptions::new().create(true).append(true).open(seg_path(dir, head))?;
        let mut cursor = fs::read_to_string(dir.join("cursor"))
            .ok()
            .and_then(|s| {
                let (a, b) = s.trim().split_once(' ')?;
                Some(Cursor { segment: a.parse().ok()?, offset: b.parse().ok()? })
            })
            .unwrap_or(Cursor { segment: segs.first().copied().unwrap_or(head), offset: 0 });
        if !segs.contains(&cursor.segment) && cursor.segment != head {
            // Its segment is gone (deleted over the quota): go on from the oldest that is left.
            cursor = Cursor { segment: segs.iter().copied().find(|n| *n > cursor.segment).unwrap_or(head), offset: 0 };
        }
        let closed = segs
            .iter()
            .filter(|n| **n != head)
            .map(|n| (*n, fs::metadata(seg_path(dir, *n)).map(|m| m.len()).unwrap_or(0)))
            .collect();
        let mut s = Spool {
            dir: dir.to_path_buf(),
            max_bytes: max_bytes.max(SEGMENT_BYTES * 2),
            closed,
            head,
            head_len: 0,
            writer,
            cursor,
            losses: Losses::default(),
        };
        s.remove_sent()?;
        Ok(s)
    }

    /// Appends one batch; rotates segments and enforces the quota.
    pub fn push(&mut self, batch: &[u8]) -> io::Result<()> {
        if self.head_len > 0 && self.head_len + batch.len() as u64 > SEGMENT_BYTES {
            self.writer.flush()?;
            self.closed.insert(self.head, self.head_len);
            self.head += 1;
            self.head_len = 0;
            self.writer = OpenOptions::new().create(true).append(true).open(seg_path(&self.dir, self.head))?;
        }
        let mut header = [0u8; 8];
        header[..4].copy_from_slice(&(batch.len() as u32).to_le_bytes());
        header[4..].copy_from_slice(&crc32fast::hash(batch).to_le_bytes());
        self.writer.write_all(&header)?;
        self.writer.write_all(batch)?;
        self.head_len += 8 + batch.len() as u64;
        self.enforce_quota()
    }

    /// Bytes on disk, sent or not.
    pub fn size(&self) -> u64 {
        self.closed.values().sum::<u64>() + self.head_len
    }

    fn enforce_quota(&mut self) -> io::Result<()> {
        let mut total = self.size();
        if total <= self.max_bytes {
            return Ok(());
        }
        while let Some((&n, &len)) = self.closed.first_key_value() {
            if total <= self.max_bytes {
                break;
            }
            let unsent = if n > self.cursor.segment {
                len
            } else if n == self.cursor.segment {
                len.saturating_sub(self.cursor.offset)
            } else {
                0
            };
            fs::remove_file(seg_path(&self.dir, n))?;
            self.closed.remove(&n);
            self.losses.dropped_bytes += unsent;
            total -= len;
            if n >= self.cursor.segment {
                self.cursor = Cursor { segment: n + 1, offset: 0 };
            }
        }
        self.save_cursor()
    }

    /// The oldest batch not yet sent, and where the reader stands after it; `None` when all is sent.
    pub fn peek(&mut self) -> io::Result<Option<(Vec<u8>, Cursor)>> {
        loop {
            match self.read_at(self.cursor)? {
                Read::Frame(body, next) => return Ok(Some((body, next))),
                Read::EndOfSegment if self.cursor.segment < self.head => {
                    // A finished segment, all sent: on to the next, and this one goes.
                    self.cursor = Cursor { segment: self.cursor.segment + 1, offset: 0 };
                    self.save_cursor()?;
                    self.remove_sent()?;
                }
                Read::Bad if self.cursor.segment < self.head => {
                    // A torn or corrupt frame: the rest of this segment cannot be trusted.
                    self.losses.torn_frames += 1;
                    self.cursor = Cursor { segment: self.cursor.segment + 1, offset: 0 };
                    self.save_cursor()?;
                }
                // All sent, or the segment being written has no whole frame yet.
                Read::EndOfSegment | Read::Bad => return Ok(None),
            }
        }
    }

    /// Up to `max_bytes` of the oldest unsent batches as one (at least one batch when
    /// there is any), and where the reader stands after them: a backlog goes in fewer
    /// requests. Reads ahead without moving the reader; only `commit` does.
    pub fn peek_many(&mut self, max_bytes: usize) -> io::Result<Option<(Vec<u8>, Cursor)>> {
        let Some((mut all, mut next)) = self.peek()? else { return Ok(None) };
        while all.len() < max_bytes {
            match self.read_at(next)? {
                Read::Frame(b, n) if all.len() + b.len() <= max_bytes => {
                    all.extend_from_slice(&b);
                    next = n;
                }
                Read::EndOfSegment if next.segment < self.head => {
                    next = Cursor { segment: next.segment + 1, offset: 0 }
                }
                _ => break,
            }
        }
        Ok(Some((all, next)))
    }

    /// The frame at `c`, without side effects.
    fn read_at(&mut self, c: Cursor) -> io::Result<Read> {
        if c.segment == self.head {
            self.writer.flush()?;
        }
        let mut f = match File::open(seg_path(&self.dir, c.segment)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Read::EndOfSegment),
            Err(e) => return Err(e),
        };
        if c.offset >= f.metadata()?.len() {
            return Ok(Read::EndOfSegment);
        }
        f.seek(SeekFrom::Start(c.offset))?;
        let mut head = [0u8; 8];
        if f.read_exact(&mut head).is_err() {
            return Ok(Read::Bad);
        }
        let n = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if n > MAX_FRAME {
            return Ok(Read::Bad);
        }
        let mut body = vec![0u8; n as usize];
        if f.read_exact(&mut body).is_err() || crc32fast::hash(&body) != crc {
            return Ok(Read::Bad);
        }
        Ok(Read::Frame(body, Cursor { segment: c.segment, offset: c.offset + 8 + n as u64 }))
    }

    /// Marks everything before `c` as sent.
    pub fn commit(&mut self, c: Cursor) -> io::Result<()> {
        self.cursor = c;
        self.save_cursor()?;
        self.remove_sent()
    }

    fn save_cursor(&self) -> io::Result<()> {
        let tmp = self.dir.join("cursor.tmp");
        fs::write(&tmp, format!("{} {}\n", self.cursor.segment, self.cursor.offset))?;
        fs::rename(tmp, self.dir.join("cursor"))
    }

    fn remove_sent(&mut self) -> io::Result<()> {
        while let Some((&n, _)) = self.closed.first_key_value().filter(|(n, _)| **n < self.cursor.segment) {
            match fs::remove_file(seg_path(&self.dir, n)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            self.closed.remove(&n);
        }
        Ok(())
    }

    /// Forces written batches to disk.
    pub fn sync(&mut self) -> io::Result<()> {
        self.writer.flush()?;
        self.writer.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(s: &mut Spool) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some((b, c)) = s.peek().unwrap() {
            out.push(b);
            s.commit(c).unwrap();
        }
        out
    }

    #[test]
    fn batches_come_back_in_order_once_across_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        s.push(b"a").unwrap();
        s.push(b"b").unwrap();
        let (first, c) = s.peek().unwrap().unwrap();
        assert_eq!(first, b"a");
        s.commit(c).unwrap();
        drop(s);
        // A restart resumes after what was sent, and writes to a new segment.
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        s.push(b"c").unwrap();
        assert_eq!(drain(&mut s), [b"b".to_vec(), b"c".to_vec()]);
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        assert!(drain(&mut s).is_empty(), "nothing twice");
        assert_eq!(segments(dir.path()).unwrap().len(), 1, "sent segments are removed");
    }

    #[test]
    fn a_backlog_is_read_ahead_in_one_piece_without_moving_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        for b in [&b"one\n"[..], b"two\n", b"three\n"] {
            s.push(b).unwrap();
        }
        let (first, _) = s.peek_many(8).unwrap().unwrap();
        assert_eq!(first, b"one\ntwo\n", "as many whole batches as fit");
        let (all, _) = s.peek_many(1 << 20).unwrap().unwrap();
        assert_eq!(all, b"one\ntwo\nthree\n", "read ahead again from the same place");
        drop(s);
        // Not committed: after a restart it is all still there.
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        let (again, c2) = s.peek_many(1 << 20).unwrap().unwrap();
        assert_eq!(again, all);
        s.commit(c2).unwrap();
        assert!(s.peek_many(1 << 20).unwrap().is_none());
    }

    #[test]
    fn a_torn_frame_is_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        s.push(b"whole").unwrap();
        s.push(b"torn by a power cut").unwrap();
        s.sync().unwrap();
        let seg = seg_path(dir.path(), s.head);
        drop(s);
        let len = fs::metadata(&seg).unwrap().len();
        OpenOptions::new().write(true).open(&seg).unwrap().set_len(len - 5).unwrap();
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        s.push(b"after").unwrap();
        assert_eq!(drain(&mut s), [b"whole".to_vec(), b"after".to_vec()]);
        assert_eq!(s.losses.torn_frames, 1);
        // A flipped bit is caught by the checksum the same way.
        s.push(b"fine").unwrap();
        s.sync().unwrap();
        let seg = seg_path(dir.path(), s.head);
        drop(s);
        let mut bytes = fs::read(&seg).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&seg, bytes).unwrap();
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        assert!(drain(&mut s).is_empty());
        assert_eq!(s.losses.torn_frames, 1);
    }

    #[test]
    fn over_the_quota_the_oldest_are_dropped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 0).unwrap(); // the floor: two segments
        let batch = vec![7u8; 1 << 20];
        for _ in 0..40 {
            s.push(&batch).unwrap();
        }
        assert!(s.size() <= 2 * SEGMENT_BYTES + (1 << 20) + 64, "{}", s.size());
        assert!(s.losses.dropped_bytes >= 20 << 20, "{:?}", s.losses);
        let kept = drain(&mut s).len();
        let dropped_frames = s.losses.dropped_bytes / ((1 << 20) + 8);
        assert_eq!(kept as u64 + dropped_frames, 40, "every batch is sent or counted as dropped");
    }
}
