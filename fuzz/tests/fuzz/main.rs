//! `ricochet-fuzz` tests: a few thousand inputs per target (so CI catches a parser that
//! starts panicking), and the harness itself (it must see a panic and a hang when there is
//! one).

mod harness;
mod seeds;
mod targets;
