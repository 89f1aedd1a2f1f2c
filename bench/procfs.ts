/** CPU time and resident memory of a process (or a process group) from /proc, for the benchmark. */
import { readdirSync, readFileSync } from 'node:fs';

const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ on Linux

interface ProcSample {
  /** User and kernel CPU time together (s). */
  cpuSeconds: number;
  /**
   * The kernel's part of `cpuSeconds` (stime, s): system calls and the softirq work done in
   * them. On loopback a `write` also runs the receiver's TCP input, so socket writes show up
   * here for any server; what a server spends above it is its own user-space code.
   */
  kernelSeconds: number;
  rssBytes: number;
}

function statFields(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name is in parentheses and may hold spaces: split after its closing one.
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

function rssBytes(pid: number): number {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** One process. Fields after the name: 0 state, 1 ppid, 2 pgrp, …, 11 utime, 12 stime. */
export function sampleProcess(pid: number): ProcSample {
  const fields = statFields(pid);
  if (!fields) return { cpuSeconds: 0, kernelSeconds: 0, rssBytes: 0 };
  return {
    cpuSeconds: (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND,
    kernelSeconds: Number(fields[12]) / CLOCK_TICKS_PER_SECOND,
    rssBytes: rssBytes(pid),
  };
}

/** Every live process of a process group summed (nginx's master and worker, say). */
export function sampleGroup(pgid: number): ProcSample {
  const total: ProcSample = { cpuSeconds: 0, kernelSeconds: 0, rssBytes: 0 };
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const fields = statFields(pid);
    if (!fields || Number(fields[2]) !== pgid) continue;
    total.cpuSeconds += (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
    total.kernelSeconds += Number(fields[12]) / CLOCK_TICKS_PER_SECOND;
    total.rssBytes += rssBytes(pid);
  }
  return total;
}
