//! Bandwidth limits (`bandwidth`, `bandwidth_schedule`) for servers and
//! rules: what the settings say (`schedule`), the limiter a server's or a
//! rule's transfers share (`limit`), and the throttled sink and source
//! that every transfer's bytes pass through (`io`). Protocol-blind: the
//! session pool wraps what a transport reads into and writes from.

mod io;
mod limit;
mod schedule;

pub use io::{ThrottledRead, ThrottledWrite};
pub use limit::{Limit, Limits, MAX_BURST, Throttle};
pub use schedule::{Bandwidth, MIN_RATE, Slot, parse_rate, parse_slot};
