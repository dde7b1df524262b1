//! Which ports of the range are held. Pure bookkeeping: whether a port is
//! bindable right now is asked of the caller, so the rules are tested
//! without sockets.
//!
//! The runtime keeps one `PortBook` under a mutex. A create reserves a port
//! here before it writes the instance (so two creates never pick the same
//! one), the store's unique index on the port stays the final guard, and a
//! port goes back to the book only when its instance is gone.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

#[derive(Debug, Clone)]
pub struct PortBook {
    range: RangeInclusive<u16>,
    held: BTreeSet<u16>,
}

impl PortBook {
    pub fn new(range: RangeInclusive<u16>) -> Self {
        Self {
            range,
            held: BTreeSet::new(),
        }
    }

    /// Marks `port` as held (an instance recorded in the store has it).
    pub fn hold(&mut self, port: u16) {
        self.held.insert(port);
    }

    /// The lowest port of the range that nobody holds and that `bindable`
    /// accepts, now held; `None` when the range is exhausted.
    pub fn reserve(&mut self, mut bindable: impl FnMut(u16) -> bool) -> Option<u16> {
        let port = self
            .range
            .clone()
            .find(|p| !self.held.contains(p) && bindable(*p))?;
        self.held.insert(port);
        Some(port)
    }

    /// Gives `port` back: its instance is gone, or its reservation was not used.
    pub fn release(&mut self, port: u16) {
        self.held.remove(&port);
    }

    /// Ports the range holds in all.
    pub fn capacity(&self) -> usize {
        self.range.clone().count()
    }

    /// The range, as `first-last`, for messages.
    pub fn describe(&self) -> String {
        format!("{}-{}", self.range.start(), self.range.end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserves_each_port_once_lowest_first() {
        let mut book = PortBook::new(100..=102);
        assert_eq!(book.reserve(|_| true), Some(100));
        assert_eq!(book.reserve(|_| true), Some(101));
        assert_eq!(book.reserve(|_| true), Some(102));
        assert_eq!(book.reserve(|_| true), None, "the range is exhausted");
    }

    #[test]
    fn skips_held_and_unbindable_ports() {
        let mut book = PortBook::new(100..=104);
        book.hold(100);
        assert_eq!(book.reserve(|p| p != 101), Some(102));
        assert_eq!(book.reserve(|p| p != 101), Some(103));
    }

    #[test]
    fn a_released_port_can_be_reserved_again() {
        let mut book = PortBook::new(100..=100);
        assert_eq!(book.reserve(|_| true), Some(100));
        assert_eq!(book.reserve(|_| true), None);
        book.release(100);
        assert_eq!(book.reserve(|_| true), Some(100));
    }

    #[test]
    fn describes_its_range() {
        let book = PortBook::new(15432..=16431);
        assert_eq!(book.describe(), "15432-16431");
        assert_eq!(book.capacity(), 1000);
    }
}
