//! `read_speed_limit` and `write_speed_limit`: a transfer paced so that, at
//! every moment, it has moved no more than the limit allows for the time
//! since it began (plus one chunk).

use std::time::Duration;

use tokio::time::Instant;

/// Paces one transfer to at most `limit` bytes per second.
#[derive(Debug)]
pub(crate) struct Pace {
    limit: Option<u64>,
    started: Instant,
    moved: u64,
}

impl Pace {
    /// No limit when `limit` is `None`.
    pub(crate) fn new(limit: Option<u64>) -> Self {
        Pace { limit, started: Instant::now(), moved: 0 }
    }

    /// The most bytes the next chunk should carry: a tenth of a second's
    /// worth, so a slow limit is met smoothly rather than in bursts.
    pub(crate) fn chunk(&self, buffer: usize) -> usize {
        match self.limit {
            Some(limit) => buffer.min(usize::try_from(limit / 10).unwrap_or(usize::MAX).max(1)),
            None => buffer,
        }
    }

    /// Counts `bytes` moved, and waits until the limit allows them.
    pub(crate) async fn moved(&mut self, bytes: usize) {
        self.moved += bytes as u64;
        let Some(limit) = self.limit else { return };
        let due = Duration::from_secs_f64(self.moved as f64 / limit as f64);
        let at = self.started + due;
        if at > Instant::now() {
            tokio::time::sleep_until(at).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_limit_paces_the_bytes() {
        let mut pace = Pace::new(Some(1000));
        assert_eq!(pace.chunk(65536), 100);
        let start = Instant::now();
        for _ in 0..30 {
            let n = pace.chunk(65536);
            pace.moved(n).await;
        }
        // 3000 bytes at 1000 B/s: three seconds.
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn no_limit_never_waits() {
        let mut pace = Pace::new(None);
        let start = Instant::now();
        pace.moved(1 << 30).await;
        assert_eq!(pace.chunk(1 << 20), 1 << 20);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
