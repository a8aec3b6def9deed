/**
 * The package as a user gets it: `npm pack` of the built library, unpacked into
 * `node_modules/@exportstream/client` of a temporary consumer directory, with the dev
 * dependencies a consumer brings itself (react, @types/react, eventsource) linked in.
 */
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { clientDir } from "./servers.js";

export interface Packed {
  /** The .tgz `npm pack` wrote. */
  readonly tarball: string;
  /** A consumer directory whose node_modules holds the unpacked package. */
  readonly consumer: string;
  remove(): void;
}

/** Packs the built library (run `npm run build:lib` first) into a new consumer directory. */
export function packToConsumer(): Packed {
  const root = mkdtempSync(join(tmpdir(), "exportstream-packed-"));
  execFileSync("npm", ["pack", "--ignore-scripts", "--pack-destination", root], { cwd: clientDir, stdio: "ignore" });
  const name = readdirSync(root).find((file) => file.endsWith(".tgz"));
  if (name === undefined) throw new Error(`npm pack wrote no tarball in ${root}`);
  const tarball = join(root, name);
  const consumer = join(root, "consumer");
  const target = join(consumer, "node_modules", "@exportstream", "client");
  mkdirSync(target, { recursive: true });
  execFileSync("tar", ["-xzf", tarball, "-C", target, "--strip-components=1"]);
  for (const dep of ["react", "react-dom", "eventsource", "@types/react", "typescript"]) {
    const link = join(consumer, "node_modules", dep);
    mkdirSync(join(link, ".."), { recursive: true });
    symlinkSync(join(clientDir, "node_modules", dep), link, "dir");
  }
  writeFileSync(join(consumer, "package.json"), `${JSON.stringify({ name: "consumer", private: true, type: "module" })}\n`);
  return { tarball, consumer, remove: () => rmSync(root, { recursive: true, force: true }) };
}

/** Runs `node` with `args` in `cwd`; resolves with its exit status and output. */
export function runNode(cwd: string, args: readonly string[], timeoutMs = 20_000): { status: number | null; output: string } {
  const result = spawnSync(process.execPath, args, { cwd, encoding: "utf8", timeout: timeoutMs, env: { ...process.env, NODE_OPTIONS: "" } });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

/** The tsc of the client's own dev dependencies. */
export const tscBin = join(clientDir, "node_modules", "typescript", "bin", "tsc");

/** The fenced code blocks of a README that follow the HTML comment `<!-- marker -->`. */
export function readmeBlocks(readme: string, marker: string): { lang: string; code: string }[] {
  const text = readFileSync(readme, "utf8");
  const pattern = new RegExp(`<!-- ${marker} -->\\s*\\n\`\`\`([a-z]+)\\n([\\s\\S]*?)\\n\`\`\`\\n`, "g");
  return [...text.matchAll(pattern)].map((match) => ({ lang: match[1] ?? "", code: match[2] ?? "" }));
}

/**
 * Runs `node` with `args` in `cwd` without blocking this process (whose servers the
 * child may talk to); kills it after `timeoutMs`.
 */
export function spawnNode(
  cwd: string,
  args: readonly string[],
  env: Record<string, string>,
  timeoutMs: number,
): Promise<{ status: number | null; output: string; timedOut: boolean }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd, env: { ...process.env, NODE_OPTIONS: "", ...env } });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, output, timedOut });
    });
  });
}
