//! Integration tests: real server on 127.0.0.1:0 with a fresh SQLite file, real HTTP, real
//! WebSockets, real agents (in-process through the weft-agent library, and child processes).

mod auth;
mod bad_input;
mod contract;
mod copy;
mod e2e;
mod enroll;
mod faults;
mod file_crashes;
mod files;
mod graph;
mod harness;
mod llm;
mod llm_exec;
mod lossy;
mod outbox;
mod pg;
mod postgres;
mod processes;
mod proxy;
mod raw;
mod replicas;
mod retention;
mod revoke;
mod siege;
mod stall;
mod tls;
mod turns;
mod wait;
mod web;
mod ws;
