/**
 * The README's Node example, run as written (the block after `<!-- node-example -->` in
 * client/README.md) in a child Node process against the real BFF, from the packed
 * package: it starts an export, waits for it and downloads the file. And the same
 * example without createNodeSession fails fast, naming the session cookie, in both modes
 * (it used to hang in multiplex mode).
 */
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { packToConsumer, readmeBlocks, spawnNode } from "./packed.js";
import type { Packed } from "./packed.js";
import { clientDir, missingPrerequisites, prerequisites, startServers } from "./servers.js";
import type { Servers } from "./servers.js";

const missing = prerequisites(
  "the README's Node example (real backend + BFF, the built library)",
  missingPrerequisites([join(clientDir, "dist", "node.js"), join(clientDir, "dist", "cjs", "node.js")]),
);

const [example] = readmeBlocks(join(clientDir, "README.md"), "node-example");
const SESSION_LINE = `const client = createExportClient({ mode: "multiplex", ...session });`;

describe.skipIf(missing !== undefined)("the README's Node example", () => {
  let servers: Servers;
  let packed: Packed;

  beforeAll(async () => {
    packed = packToConsumer();
    servers = await startServers();
  });

  afterAll(async () => {
    await servers?.stop();
    packed?.remove();
  });

  it("is in the README, in multiplex mode with createNodeSession", () => {
    expect(example?.lang).toBe("js");
    expect(example?.code).toContain(SESSION_LINE);
  });

  it("starts, waits and downloads the file, whose sha256 is the job's", async () => {
    writeFileSync(join(packed.consumer, "example.mjs"), example?.code ?? "");
    const run = await spawnNode(packed.consumer, ["example.mjs"], { BFF_URL: servers.bffUrl }, 45_000);
    expect(run.status, `${run.output}\n${servers.output()}`).toBe(0);
    const [name = "", sha256 = ""] = run.output.trim().split("\n").at(-1)?.split(" ") ?? [];
    expect(name).toMatch(/\.csv$/);
    const file = readFileSync(join(packed.consumer, name));
    expect(file.length).toBeGreaterThan(10_000);
    expect(createHash("sha256").update(file).digest("hex")).toBe(sha256);
  }, 60_000);

  it.each(["multiplex", "per-job"])("without createNodeSession fails fast in %s mode with NOT_FOUND naming the session cookie", async (mode) => {
    const bare = (example?.code ?? "").replace(SESSION_LINE, `const client = createExportClient({ mode: "${mode}", baseUrl, EventSource });`);
    expect(bare).not.toBe(example?.code);
    writeFileSync(join(packed.consumer, `bare-${mode}.mjs`), bare);
    // The export takes 2 s and waitFor allows 60 s: an answer within 20 s is the check's.
    const run = await spawnNode(packed.consumer, [`bare-${mode}.mjs`], { BFF_URL: servers.bffUrl }, 20_000);
    expect(run.timedOut, run.output).toBe(false);
    expect(run.status).not.toBe(0);
    expect(run.output).toContain("NOT_FOUND");
    expect(run.output).toContain("session cookie");
  }, 30_000);
});
