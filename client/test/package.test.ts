/**
 * What `npm pack` ships, checked as a user meets it: the tarball's contents and manifest,
 * @arethetypeswrong/cli and publint on it, `require()` and `import` of every entry point,
 * no side effects at import, the types under the module resolutions users have, and the
 * gzipped size a bundler makes of it.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { packToConsumer, readmeBlocks, runNode, tscBin } from "./packed.js";
import type { Packed } from "./packed.js";
import { clientDir, prerequisites } from "./servers.js";

const ENTRIES = ["index", "react", "node", "testing", "testing/playwright"] as const;
const SPECIFIERS = ["@exportstream/client", "@exportstream/client/react", "@exportstream/client/node", "@exportstream/client/testing", "@exportstream/client/testing/playwright"];
/**
 * Gzipped bytes, minified and split by esbuild as a user's bundler would; see README
 * "Budgets". Loaded at start: the entry chunk and the chunks it imports.
 */
const BUDGET_CORE = 6_600;
const BUDGET_CORE_AND_REACT = 7_600;
/** The chunks loaded on demand: cross-tab sharing, the poller, downloadOnce's memory. */
const BUDGET_ON_DEMAND = 2_300;
/** The testing kit is for tests, not app bundles; the budget keeps it from growing unseen. */
const BUDGET_CORE_AND_TESTING = 12_000;

const missing = prerequisites(
  "npm package tests (the built library)",
  ENTRIES.flatMap((entry) => [join(clientDir, "dist", `${entry}.js`), join(clientDir, "dist", "cjs", `${entry}.js`)])
    .filter((path) => !existsSync(path))
    .map((path) => `${path} (npm run build:lib)`),
);

describe.skipIf(missing !== undefined)("the npm package", () => {
  let packed: Packed;
  beforeAll(() => {
    packed = packToConsumer();
  });
  afterAll(() => packed.remove());

  it("contains the ESM and CommonJS builds with declarations, LICENSE, README.md and package.json — no sources, no maps", () => {
    const output = execFileSync("tar", ["-tzf", packed.tarball], { encoding: "utf8" });
    const files = output.trim().split("\n").map((path) => path.replace(/^package\//, "")).sort();
    for (const file of files) {
      expect(file).toMatch(/^(dist\/(cjs\/)?([a-z]+\/)?[a-z-]+\.(js|d\.ts)|dist\/cjs\/package\.json|LICENSE|README\.md|package\.json)$/);
    }
    const built = ENTRIES.flatMap((entry) => [`dist/${entry}.js`, `dist/${entry}.d.ts`, `dist/cjs/${entry}.js`, `dist/cjs/${entry}.d.ts`]);
    expect(files).toEqual(expect.arrayContaining([...built, "dist/cjs/package.json", "LICENSE", "README.md"]));
  });

  it("can be published: no private flag, a license, a repository, keywords, no runtime dependencies", () => {
    const manifest = JSON.parse(readFileSync(join(clientDir, "package.json"), "utf8")) as Record<string, unknown>;
    expect(manifest["private"]).toBeUndefined();
    expect(manifest["license"]).toBe("MIT");
    expect(readFileSync(join(clientDir, "LICENSE"), "utf8")).toContain("MIT License");
    expect(manifest["repository"]).toEqual({ type: "git", url: "git+https://github.com/exportstream/exportstream.git", directory: "client" });
    expect((manifest["keywords"] as string[]).length).toBeGreaterThan(0);
    expect(manifest["dependencies"] ?? {}).toEqual({});
    expect(manifest["sideEffects"]).toBe(false);
  });

  it("passes @arethetypeswrong/cli (every entry, every resolution) and publint --strict", () => {
    const attw = spawnSync(join(clientDir, "node_modules", ".bin", "attw"), [packed.tarball, "--format", "ascii"], { encoding: "utf8" });
    expect(attw.status, `${attw.stdout}${attw.stderr}`).toBe(0);
    expect(attw.stdout).toContain("No problems found");
    const publint = spawnSync(join(clientDir, "node_modules", ".bin", "publint"), [packed.tarball, "--strict"], { encoding: "utf8" });
    expect(publint.status, `${publint.stdout}${publint.stderr}`).toBe(0);
    expect(publint.stdout).toContain("All good");
  });

  it("require()s every entry point from CommonJS, and imports them from ESM", () => {
    const probe = (load: string): string => `
      const names = { "@exportstream/client": "createExportClient", "@exportstream/client/react": "useExport", "@exportstream/client/node": "createNodeSession", "@exportstream/client/testing": "createFakeExportServer", "@exportstream/client/testing/playwright": "startExport" };
      for (const [specifier, name] of Object.entries(names)) {
        const mod = ${load};
        if (typeof mod[name] !== "function") throw new Error(specifier + " has no " + name);
      }
      console.log("loaded");`;
    writeFileSync(join(packed.consumer, "require.cjs"), probe("require(specifier)"));
    writeFileSync(join(packed.consumer, "import.mjs"), probe("await import(specifier)"));
    for (const file of ["require.cjs", "import.mjs"]) {
      const { status, output } = runNode(packed.consumer, [file]);
      expect(output).toContain("loaded");
      expect(status, output).toBe(0);
    }
  });

  it("has no side effects at import: no global needed, no timer, no request, no microtask", () => {
    // Every global the library may use is removed or replaced by a spy before the
    // entries load; any call is a side effect.
    const script = `
      const calls = [];
      for (const name of ["fetch", "EventSource", "document", "window", "BroadcastChannel", "navigator"]) {
        try { Object.defineProperty(globalThis, name, { value: undefined, configurable: true, writable: true }); } catch {}
      }
      for (const name of ["setTimeout", "setInterval", "setImmediate", "queueMicrotask"]) {
        const original = globalThis[name];
        globalThis[name] = (...args) => { calls.push(name); return original(...args); };
      }
      globalThis.fetch = () => { calls.push("fetch"); return Promise.reject(new Error("no")); };
      const load = process.argv[2] === "cjs" ? (s) => require(s) : (s) => import(s);
      const { createRequire } = await import("node:module");
      const require = createRequire(process.cwd() + "/");
      for (const specifier of ${JSON.stringify(SPECIFIERS)}) await load(specifier);
      console.log(JSON.stringify(calls));`;
    writeFileSync(join(packed.consumer, "side-effects.mjs"), script);
    for (const kind of ["esm", "cjs"]) {
      const { status, output } = runNode(packed.consumer, ["side-effects.mjs", kind]);
      expect(status, output).toBe(0);
      expect(output.trim(), kind).toBe("[]");
    }
  });

  it("type-checks importing every entry under moduleResolution node10, node16 (CommonJS and ESM) and bundler", () => {
    const source = `
      import { createExportClient, ExportError } from "@exportstream/client";
      import type { ClientErrorCode, Job } from "@exportstream/client";
      import { ExportClientProvider, useExport } from "@exportstream/client/react";
      import { createNodeSession } from "@exportstream/client/node";
      import { createFakeExportServer } from "@exportstream/client/testing";
      const client = createExportClient({ mode: "multiplex" });
      const code: ClientErrorCode = "NOT_READY";
      export const used = [client, code, ExportError, ExportClientProvider, useExport, createNodeSession, createFakeExportServer({ scenario: { failAt: 60 } }).client] as const;
      export type J = Job;
    `;
    const cases = [
      { name: "node10", module: "commonjs", moduleResolution: "node10", file: "index.ts", type: "commonjs" },
      { name: "node16-cjs", module: "node16", moduleResolution: "node16", file: "index.cts", type: "module" },
      { name: "node16-esm", module: "node16", moduleResolution: "node16", file: "index.mts", type: "module" },
      { name: "bundler", module: "esnext", moduleResolution: "bundler", file: "index.ts", type: "module" },
    ];
    for (const { name, module, moduleResolution, file, type } of cases) {
      const dir = join(packed.consumer, `tsc-${name}`);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, "package.json"), JSON.stringify({ type }));
      writeFileSync(join(dir, file), source);
      const compilerOptions = { module, moduleResolution, strict: true, noEmit: true, target: "es2022", lib: ["es2022", "dom"], types: [], skipLibCheck: false, jsx: "react-jsx" };
      writeFileSync(join(dir, "tsconfig.json"), JSON.stringify({ compilerOptions, files: [file] }));
      const result = spawnSync(process.execPath, [tscBin, "-p", dir], { encoding: "utf8" });
      expect(result.status, `${name}: ${result.stdout}${result.stderr}`).toBe(0);
    }
  });

  it("compiles every README example marked <!-- compile --> as pasted, under strict TypeScript against the package", () => {
    const blocks = [join(clientDir, "..", "README.md"), join(clientDir, "README.md")].flatMap((readme) => readmeBlocks(readme, "compile"));
    expect(blocks.map((block) => block.lang).sort()).toEqual(["ts", "ts", "tsx"]);
    const dir = join(packed.consumer, "readme");
    mkdirSync(dir, { recursive: true });
    const files = blocks.map((block, i) => {
      const file = `example${i}.${block.lang}`;
      writeFileSync(join(dir, file), block.code);
      return file;
    });
    const compilerOptions = {
      module: "esnext",
      moduleResolution: "bundler",
      target: "es2022",
      lib: ["es2022", "dom"],
      jsx: "react-jsx",
      strict: true,
      noUncheckedIndexedAccess: true,
      exactOptionalPropertyTypes: true,
      noEmit: true,
      types: [],
    };
    writeFileSync(join(dir, "tsconfig.json"), JSON.stringify({ compilerOptions, files }));
    const result = spawnSync(process.execPath, [tscBin, "-p", dir], { encoding: "utf8" });
    expect(result.status, `${result.stdout}${result.stderr}`).toBe(0);
  });

  it(`stays within its size budget: ${BUDGET_CORE} B gzipped loaded at start for the core, ${BUDGET_CORE_AND_REACT} B with the React entry, ${BUDGET_ON_DEMAND} B on demand, ${BUDGET_CORE_AND_TESTING} B for the testing kit`, async () => {
    const outdir = join(packed.consumer, "size");
    /**
     * esbuild with code splitting, as a user's bundler: the chunks loaded at start (the
     * entry and what it imports) and those loaded on demand (dynamic imports), each
     * gzipped on its own as it travels.
     */
    const sizes = async (contents: string): Promise<{ atStart: number; onDemand: number }> => {
      const result = await build({
        stdin: { contents, resolveDir: packed.consumer, loader: "js" },
        absWorkingDir: packed.consumer,
        bundle: true,
        minify: true,
        format: "esm",
        platform: "browser",
        external: ["react"],
        splitting: true,
        outdir,
        metafile: true,
        write: false,
        logLevel: "silent",
      });
      const gzipped = new Map(result.outputFiles.map((file) => [file.path, gzipSync(file.contents).length]));
      const outputs = Object.entries(result.metafile.outputs).map(([path, output]) => ({ path: resolve(packed.consumer, path), ...output }));
      const atStart = new Set<string>();
      const visit = (path: string): void => {
        if (atStart.has(path)) return;
        atStart.add(path);
        const output = outputs.find((each) => each.path === path);
        for (const each of output?.imports ?? []) if (each.kind === "import-statement") visit(resolve(packed.consumer, each.path));
      };
      visit(outputs.find((each) => each.entryPoint === "<stdin>")?.path ?? "");
      let start = 0;
      let onDemand = 0;
      for (const [path, bytes] of gzipped) {
        if (atStart.has(path)) start += bytes;
        else onDemand += bytes;
      }
      return { atStart: start, onDemand };
    };
    const core = await sizes(`export * from "@exportstream/client";`);
    const withReact = await sizes(`export * from "@exportstream/client"; export * from "@exportstream/client/react";`);
    console.info(`gzipped, minified: at start core ${core.atStart} B, core + react ${withReact.atStart} B; on demand ${core.onDemand} B`);
    expect(core.atStart).toBeGreaterThan(1_000); // the bundle really holds the client
    expect(core.onDemand).toBeGreaterThan(1_000); // and its chunks loaded on demand are split out
    expect(core.atStart).toBeLessThanOrEqual(BUDGET_CORE);
    expect(withReact.atStart).toBeLessThanOrEqual(BUDGET_CORE_AND_REACT);
    expect(core.onDemand).toBeLessThanOrEqual(BUDGET_ON_DEMAND);
    const testing = await build({
      stdin: { contents: `export * from "@exportstream/client/testing";`, resolveDir: packed.consumer, loader: "js" },
      bundle: true,
      minify: true,
      format: "esm",
      platform: "browser",
      write: false,
      logLevel: "silent",
    });
    const withTesting = gzipSync(testing.outputFiles[0]?.contents ?? new Uint8Array()).length;
    console.info(`gzipped, minified: testing (with the core, one file) ${withTesting} B`);
    expect(withTesting).toBeLessThanOrEqual(BUDGET_CORE_AND_TESTING);
  });
});
