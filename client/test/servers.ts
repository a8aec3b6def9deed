/**
 * Starts the real backend and BFF binaries on free loopback ports for the integration
 * and browser tests, and stops them afterwards.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const clientDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const binDir = resolve(process.env["EXPORTSTREAM_BIN_DIR"] ?? join(clientDir, "..", "bin"));
export const backendBin = join(binDir, "backend");
export const bffBin = join(binDir, "bff");
export const demoDir = join(clientDir, "dist", "demo");

/** True when running in CI, where a missing prerequisite is a failure, not a skip. */
export const inCI = ["true", "1"].includes((process.env["CI"] ?? "").toLowerCase());

/**
 * A running stack to test instead of starting the binaries: the compose integration
 * profile sets it to nginx's address (`http://client`). The backend is then not
 * reachable, so checks of its metrics are skipped.
 */
export const externalBffUrl = process.env["EXPORTSTREAM_BFF_URL"];

/** What is missing to run the end-to-end tests, as readable lines (empty: all there). */
export function missingPrerequisites(extra: readonly string[] = []): string[] {
  const missing: string[] = [];
  if (externalBffUrl) return missing;
  for (const bin of [backendBin, bffBin]) {
    if (!existsSync(bin)) missing.push(`binary ${bin} (build it with the Makefile, or set EXPORTSTREAM_BIN_DIR)`);
  }
  if (!existsSync(join(demoDir, "index.html"))) missing.push(`demo page ${demoDir} (run npm run build:demo)`);
  for (const path of extra) if (!existsSync(path)) missing.push(path);
  return missing;
}

/**
 * Skips loudly outside CI; under CI=true the suite must fail instead, so returns the
 * message the caller's failing test throws.
 */
export function reportMissing(suite: string, missing: readonly string[]): string | undefined {
  if (missing.length === 0) return undefined;
  const message = `${suite} needs:\n  - ${missing.join("\n  - ")}`;
  if (!inCI) {
    const bar = "=".repeat(78);
    console.warn(`\n${bar}\nMISSING COMPONENT — skipping: ${message}\n${bar}\n`);
  }
  return message;
}

export interface Servers {
  /** BFF origin, e.g. http://127.0.0.1:41234 */
  readonly bffUrl: string;
  /** The backend's origin; undefined against an external stack. */
  readonly backendUrl: string | undefined;
  /** Everything both processes printed so far, for failure messages. */
  output(): string;
  stop(): Promise<void>;
  /**
   * Kills the BFF with SIGKILL (no clean end of its streams) and resolves once it is
   * gone. Only for a stack of {@link startServers}: rejects against an external one.
   */
  killBff(): Promise<void>;
  /** Starts a new BFF on the same address and arguments; resolves once it is healthy. */
  restartBff(): Promise<void>;
}

/**
 * Starts the backend, then the BFF in front of it, and waits until both are healthy.
 * `env` adds configuration both read (e.g. `WORKERS`, `SSE_RETRY`).
 */
export async function startServers(options: { env?: Record<string, string> } = {}): Promise<Servers> {
  if (externalBffUrl) {
    const external = (): Promise<void> => Promise.reject(new Error("an external stack's BFF cannot be killed"));
    return {
      bffUrl: externalBffUrl,
      backendUrl: undefined,
      output: () => "",
      stop: () => Promise.resolve(),
      killBff: external,
      restartBff: external,
    };
  }
  const workDir = mkdtempSync(join(tmpdir(), "exportstream-test-"));
  const [backendPort, bffPort] = [await freePort(), await freePort()];
  const backendUrl = `http://127.0.0.1:${backendPort}`;
  const bffUrl = `http://127.0.0.1:${bffPort}`;
  const logs: string[] = [];
  const processes: ChildProcess[] = [];
  const env = { ...process.env, ...options.env, DATA_DIR: join(workDir, "data") };

  const stop = async (): Promise<void> => {
    await Promise.all(processes.reverse().map(terminate));
    rmSync(workDir, { recursive: true, force: true });
  };

  const bffArgs = ["-addr", `127.0.0.1:${bffPort}`, "-backend-url", backendUrl, "-static-dir", demoDir];
  let bff: ChildProcess | undefined;
  const startBff = async (): Promise<void> => {
    bff = run("bff", bffBin, bffArgs, workDir, env, logs);
    processes.push(bff);
    await waitHealthy(`${bffUrl}/healthz`, bff, logs);
  };

  try {
    processes.push(run("backend", backendBin, ["-addr", `127.0.0.1:${backendPort}`], workDir, env, logs));
    await waitHealthy(`${backendUrl}/healthz`, processes[0]!, logs);
    await startBff();
  } catch (error) {
    await stop();
    throw error;
  }
  const killBff = (): Promise<void> => {
    const doomed = bff;
    if (doomed === undefined || doomed.exitCode !== null || doomed.signalCode !== null) {
      return Promise.reject(new Error("the BFF is not running"));
    }
    return new Promise((done) => {
      doomed.once("exit", () => done());
      doomed.kill("SIGKILL");
    });
  };
  return { bffUrl, backendUrl, output: () => logs.join(""), stop, killBff, restartBff: startBff };
}

/** Starts only the BFF, in front of a backend of the test's own (a scripted one). */
export async function startBffAgainst(backendUrl: string): Promise<Servers> {
  const workDir = mkdtempSync(join(tmpdir(), "exportstream-test-"));
  const bffUrl = `http://127.0.0.1:${await freePort()}`;
  const logs: string[] = [];
  const bff = run(
    "bff",
    bffBin,
    ["-addr", bffUrl.slice("http://".length), "-backend-url", backendUrl, "-static-dir", demoDir],
    workDir,
    process.env,
    logs,
  );
  const stop = async (): Promise<void> => {
    await terminate(bff);
    rmSync(workDir, { recursive: true, force: true });
  };
  try {
    await waitHealthy(`${bffUrl}/healthz`, bff, logs);
  } catch (error) {
    await stop();
    throw error;
  }
  const own = (): Promise<void> => Promise.reject(new Error("startBffAgainst's BFF is not restartable"));
  return { bffUrl, backendUrl, output: () => logs.join(""), stop, killBff: own, restartBff: own };
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

function run(
  name: string,
  bin: string,
  args: string[],
  cwd: string,
  env: NodeJS.ProcessEnv,
  logs: string[],
): ChildProcess {
  const child = spawn(bin, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
  const collect = (chunk: Buffer): void => {
    logs.push(`[${name}] ${chunk.toString()}`);
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  child.on("error", (error) => logs.push(`[${name}] spawn error: ${error.message}\n`));
  return child;
}

/** Polls a health URL until 200; bounded, and fails fast if the process exits. */
async function waitHealthy(url: string, child: ChildProcess, logs: string[]): Promise<void> {
  const deadline = Date.now() + 15_000;
  let last = "no answer yet";
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`process exited (${child.exitCode ?? child.signalCode}) before ${url} was healthy:\n${logs.join("")}`);
    }
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      if (response.status === 200) return;
      last = `HTTP ${response.status}`;
    } catch (error) {
      last = String(error);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${url} not healthy after 15 s (${last}):\n${logs.join("")}`);
}

function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => {
    const force = setTimeout(() => child.kill("SIGKILL"), 5_000);
    child.once("exit", () => {
      clearTimeout(force);
      done();
    });
    child.kill("SIGTERM");
  });
}
