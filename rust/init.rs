//! `--init`: a minimal PID 1 for a container, as docker's `--init` (tini)
//! provides. The shim binary is bind-mounted into the container and run as
//! `pinnace-init -- CMD...`: it starts CMD, passes on the signals a PID 1
//! would otherwise swallow, reaps every orphan that the kernel re-parents to
//! it, and exits as CMD did (128+N for a signal N).

use std::ffi::CString;

/// The argument that makes the init an idle PID 1 (a sandbox's, waiting for
/// `exec`s): it reaps what ends and exits at the first stop signal.
pub const PAUSE: &str = "--pause";

/// Idle until asked to stop (0 on SIGTERM, SIGINT, SIGHUP or SIGQUIT, as a
/// pause container does), reaping every orphan meanwhile: processes that
/// `exec`s leave behind never linger as zombies.
fn pause() -> i32 {
    // SAFETY: plain libc calls on values owned here.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
        loop {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            match libc::sigwaitinfo(&all, &mut info) {
                libc::SIGTERM | libc::SIGINT | libc::SIGHUP | libc::SIGQUIT => return 0,
                libc::SIGCHLD => while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {},
                _ => {}
            }
        }
    }
}

/// Signals passed on to the command rather than acted on: everything a user
/// or `pinnace stop`/`kill` may send, but not the ones that stop or kill us.
const FORWARDED: [libc::c_int; 10] = [
    libc::SIGHUP, libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGUSR1, libc::SIGUSR2,
    libc::SIGWINCH, libc::SIGCONT, libc::SIGALRM, libc::SIGPIPE,
];

/// `args` as given to the binary: `[argv0, "--", cmd, args...]` (the `--` is
/// optional), or `[argv0, "--pause"]`: an idle PID 1 and nothing else.
pub fn main(args: &[String]) -> i32 {
    if args.get(1).map(String::as_str) == Some(PAUSE) && args.len() == 2 {
        return pause();
    }
    let cmd: Vec<&String> = args.iter().skip(1).skip_while(|a| a.as_str() == "--").collect();
    if cmd.is_empty() {
        eprintln!("pinnace-init: no command given");
        return 125;
    }
    let argv: Vec<CString> = match cmd.iter().map(|a| CString::new(a.as_bytes())).collect() {
        Ok(v) => v,
        Err(_) => {
            eprintln!("pinnace-init: an argument holds a NUL byte");
            return 125;
        }
    };
    let mut argp: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argp.push(std::ptr::null());
    // SAFETY: plain libc calls on values owned here; the child only calls
    // async-signal-safe functions before exec.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigprocmask(libc::SIG_SETMASK, &all, &mut old);
        let child = libc::fork();
        if child < 0 {
            eprintln!("pinnace-init: fork: {}", std::io::Error::last_os_error());
            return 125;
        }
        if child == 0 {
            libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            // its own process group, foreground on the terminal if there is one,
            // so ^C reaches it as it would without an init
            libc::setpgid(0, 0);
            // (from a background group tcsetpgrp would stop us with SIGTTOU)
            libc::signal(libc::SIGTTOU, libc::SIG_IGN);
            libc::tcsetpgrp(0, libc::getpid());
            libc::signal(libc::SIGTTOU, libc::SIG_DFL);
            libc::execvp(argp[0], argp.as_ptr());
            let e = *libc::__errno_location();
            let msg = format!("pinnace-init: exec {}: {}\n", cmd[0], std::io::Error::from_raw_os_error(e));
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::_exit(if e == libc::ENOENT { 127 } else { 126 });
        }
        loop {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let sig = libc::sigwaitinfo(&all, &mut info);
            if sig < 0 {
                continue;
            }
            if FORWARDED.contains(&sig) {
                libc::kill(child, sig);
                continue;
            }
            if sig != libc::SIGCHLD {
                continue;
            }
            // reap everything that has ended: our command and any orphan
            loop {
                let mut status = 0;
                let pid = libc::waitpid(-1, &mut status, libc::WNOHANG);
                if pid <= 0 {
                    break;
                }
                if pid == child {
                    if libc::WIFSIGNALED(status) {
                        return 128 + libc::WTERMSIG(status);
                    }
                    return libc::WEXITSTATUS(status);
                }
            }
        }
    }
}
