//! A queue of deadlines for the transaction timers of RFC 3261 §17 (A–K) and the 2xx
//! retransmission of §13.3.1.4, cheap when most deadlines are set a fixed time ahead.
//!
//! Almost every deadline a SIP stack sets is `now` plus one of a few durations: T1 and its
//! doublings, T4, and 64·T1 (32 s), the one that keeps every finished transaction around.
//! Deadlines set the same duration ahead come due in the order they were set, so each such
//! duration gets a lane: a FIFO that pushes at the back and pops at the front, touching two
//! cache lines however many timers wait. A binary heap of 100 000 entries, by contrast, walks
//! 17 levels of a multi-megabyte array on every pop. A lane left empty goes to the next new
//! duration (one-off distances, such as Timer B's once the retransmissions stop, come and go).
//! Deadlines that fit no lane (more durations than lanes, or a clock that went backwards) go
//! to a heap, so any input stays correct.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

/// How many distinct durations get a lane of their own; the rest share the heap.
const LANES: usize = 8;

/// Deadlines with a payload each, popped in time order (ties in any order).
#[derive(Debug)]
pub(crate) struct TimerQueue<T> {
    /// FIFOs of deadlines set the same duration ahead, so each is sorted.
    lanes: Vec<(Duration, VecDeque<(Instant, T)>)>,
    /// Everything else.
    heap: BinaryHeap<Reverse<HeapItem<T>>>,
}

/// A heap entry ordered by its deadline alone (the payload needs no order).
#[derive(Debug)]
struct HeapItem<T>(Instant, T);

impl<T> PartialEq for HeapItem<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl<T> Eq for HeapItem<T> {}
impl<T> PartialOrd for HeapItem<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for HeapItem<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl<T> Default for TimerQueue<T> {
    fn default() -> Self {
        TimerQueue {
            lanes: Vec::new(),
            heap: BinaryHeap::new(),
        }
    }
}

impl<T> TimerQueue<T> {
    /// Adds a deadline set at `now` (so `at - now` picks its lane).
    pub fn push(&mut self, now: Instant, at: Instant, item: T) {
        let ahead = at.saturating_duration_since(now);
        let lane = match self.lanes.iter().position(|(d, _)| *d == ahead) {
            Some(i) => Some(i),
            None if self.lanes.len() < LANES => {
                self.lanes.push((ahead, VecDeque::new()));
                Some(self.lanes.len() - 1)
            }
            // a deadline set from an earlier time (Timer B once the retransmissions stop)
            // has a one-off distance: its lane empties soon and goes to the next duration
            None => self
                .lanes
                .iter()
                .position(|(_, q)| q.is_empty())
                .inspect(|&i| {
                    self.lanes[i].0 = ahead;
                }),
        };
        if let Some(i) = lane {
            let q = &mut self.lanes[i].1;
            // a lane stays sorted only while time moves forward
            if q.back().is_none_or(|(last, _)| *last <= at) {
                q.push_back((at, item));
                return;
            }
        }
        self.heap.push(Reverse(HeapItem(at, item)));
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        let lanes = self
            .lanes
            .iter()
            .filter_map(|(_, q)| q.front().map(|(at, _)| *at));
        let heap = self.heap.peek().map(|Reverse(HeapItem(at, _))| *at);
        lanes.chain(heap).min()
    }

    /// Drops deadlines at the front that `live` says no longer matter (their timer was
    /// stopped or moved), so that [`TimerQueue::next_deadline`] names one that does and the
    /// caller is not woken for nothing. Each entry is looked at once: entries behind a live
    /// front wait until they reach it.
    pub fn drop_stale_fronts(&mut self, mut live: impl FnMut(Instant, &T) -> bool) {
        for (_, q) in &mut self.lanes {
            while let Some((at, item)) = q.front() {
                if live(*at, item) {
                    break;
                }
                q.pop_front();
            }
        }
        while let Some(Reverse(HeapItem(at, item))) = self.heap.peek() {
            if live(*at, item) {
                break;
            }
            self.heap.pop();
        }
    }

    /// Takes the earliest deadline if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, T)> {
        let mut best: Option<(Instant, Option<usize>)> = None;
        for (i, (_, q)) in self.lanes.iter().enumerate() {
            if let Some((at, _)) = q.front() {
                if *at <= now && best.is_none_or(|(b, _)| *at < b) {
                    best = Some((*at, Some(i)));
                }
            }
        }
        if let Some(Reverse(HeapItem(at, _))) = self.heap.peek() {
            if *at <= now && best.is_none_or(|(b, _)| *at < b) {
                best = Some((*at, None));
            }
        }
        match best? {
            (_, Some(i)) => self.lanes[i].1.pop_front(),
            (_, None) => self
                .heap
                .pop()
                .map(|Reverse(HeapItem(at, item))| (at, item)),
        }
    }

    /// How many deadlines wait.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lanes.iter().map(|(_, q)| q.len()).sum::<usize>() + self.heap.len()
    }

    /// Gives memory back after a burst: a lane or heap using under a quarter of a large
    /// capacity shrinks.
    pub fn shrink(&mut self) {
        for (_, q) in &mut self.lanes {
            if q.capacity() > 1024 && q.len() * 4 < q.capacity() {
                q.shrink_to_fit();
            }
        }
        if self.heap.capacity() > 1024 && self.heap.len() * 4 < self.heap.capacity() {
            self.heap.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pops everything due at `now`, in order.
    fn drain(q: &mut TimerQueue<u32>, now: Instant) -> Vec<(Instant, u32)> {
        std::iter::from_fn(|| q.pop_due(now)).collect()
    }

    #[test]
    fn deadlines_come_out_in_time_order_across_lanes_and_heap() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut q = TimerQueue::default();
        // ten durations: eight lanes, then the heap; set at rising times
        let mut want = Vec::new();
        for step in 0..5u64 {
            let now = t0 + ms(step * 7);
            for d in 0..10u64 {
                let at = now + ms(d * 100 + 3);
                let item = (step * 10 + d) as u32;
                q.push(now, at, item);
                want.push((at, item));
            }
        }
        assert_eq!(q.len(), 50);
        assert_eq!(q.next_deadline(), want.iter().map(|(at, _)| *at).min());
        // nothing is due before the first deadline
        assert!(q.pop_due(t0).is_none());
        let got = drain(&mut q, t0 + ms(10_000));
        let times: Vec<Instant> = got.iter().map(|(at, _)| *at).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "not in order");
        let mut items: Vec<u32> = got.iter().map(|(_, i)| *i).collect();
        items.sort_unstable();
        assert_eq!(items, (0..50).collect::<Vec<_>>());
        assert_eq!(q.next_deadline(), None);
    }

    #[test]
    fn only_what_is_due_pops() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut q = TimerQueue::default();
        q.push(t0, t0 + s(32), 1);
        q.push(t0, t0 + s(1), 2);
        q.push(t0 + s(1), t0 + s(33), 3);
        assert_eq!(drain(&mut q, t0 + s(1)), vec![(t0 + s(1), 2)]);
        assert_eq!(q.next_deadline(), Some(t0 + s(32)));
        assert_eq!(drain(&mut q, t0 + s(32)), vec![(t0 + s(32), 1)]);
        assert_eq!(drain(&mut q, t0 + s(40)), vec![(t0 + s(33), 3)]);
    }

    #[test]
    fn one_off_durations_do_not_keep_lanes_from_common_ones() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut q = TimerQueue::default();
        // eight one-off distances take every lane, then come due and leave
        for d in 1..=8u64 {
            q.push(t0, t0 + ms(d * 7 + 1), d as u32);
        }
        assert_eq!(q.heap.len(), 0);
        while q.pop_due(t0 + ms(100)).is_some() {}
        // a common distance gets a lane back: a thousand of them stay out of the heap
        for i in 0..1000u64 {
            let now = t0 + ms(100 + i);
            q.push(now, now + ms(32_000), i as u32);
        }
        assert_eq!(q.heap.len(), 0);
        assert_eq!(q.len(), 1000);
        assert_eq!(q.next_deadline(), Some(t0 + ms(32_100)));
    }

    #[test]
    fn stale_fronts_go_and_live_ones_stay() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut q = TimerQueue::default();
        // lane of 200 ms: items 1 (stale), 2 (live), 3 (stale, behind a live one)
        q.push(t0, t0 + ms(200), 1);
        q.push(t0 + ms(1), t0 + ms(201), 2);
        q.push(t0 + ms(2), t0 + ms(202), 3);
        // lane of 500 ms: all stale
        q.push(t0, t0 + ms(500), 4);
        q.push(t0, t0 + ms(500), 5);
        let live = |_: Instant, i: &u32| *i == 2;
        q.drop_stale_fronts(live);
        assert_eq!(q.next_deadline(), Some(t0 + ms(201)));
        assert_eq!(q.len(), 2, "the stale entry behind a live front waits");
        assert_eq!(q.pop_due(t0 + ms(300)), Some((t0 + ms(201), 2)));
        q.drop_stale_fronts(live);
        assert_eq!(q.next_deadline(), None);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn a_deadline_earlier_than_its_lane_tail_still_comes_out_in_order() {
        // `now` going backwards (a caller's mistake) must not break the order
        let t0 = Instant::now() + Duration::from_secs(10);
        let s = Duration::from_secs;
        let mut q = TimerQueue::default();
        q.push(t0, t0 + s(5), 1);
        q.push(t0 - s(3), t0 + s(2), 2); // same 5 s lane, earlier than its tail
        assert_eq!(
            drain(&mut q, t0 + s(9)),
            vec![(t0 + s(2), 2), (t0 + s(5), 1)]
        );
    }
}
