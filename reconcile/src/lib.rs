//! `allot-reconcile`: the finance and regulator CLI.
//!
//! It will own reconciliation of TigerBeetle against Postgres and bank statements, and
//! signed ledger exports. Today it only parses its command line.
