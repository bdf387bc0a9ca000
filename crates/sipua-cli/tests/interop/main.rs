//! Interop tests: the `sipua` command against real, independent SIP programs on loopback.
//! A peer that is missing is a failed test (`scripts/test` installs them).

mod auth;
mod baresip;
mod browser;
mod common;
mod dispatcher;
mod flood;
mod kamailio;
mod listeners;
mod lossy;
mod matrix;
mod matrix_baresip;
mod matrix_node;
mod matrix_pjsip;
mod matrix_sipp;
mod matrix_subscribe;
mod media;
mod signals;
mod sipp;
mod threads;
mod transfer;
mod usrloc;
