/**
 * The shape the library and the demo keep: no function longer than 80 lines (state that
 * needs more goes into a small class with methods, one concern each).
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const MAX_FUNCTION_LINES = 80;
const root = new URL("..", import.meta.url).pathname;

/** `file:line name (n lines)` of every function in `source` longer than the limit. */
function longFunctions(file: string, source: string): string[] {
  const sourceFile = ts.createSourceFile(file, source, ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) && "body" in node && node.body !== undefined) {
      const first = sourceFile.getLineAndCharacterOfPosition(node.getStart()).line + 1;
      const lines = sourceFile.getLineAndCharacterOfPosition(node.getEnd()).line + 2 - first;
      const name = node.name?.getText(sourceFile) ?? "(anonymous)";
      if (lines > MAX_FUNCTION_LINES) found.push(`${file}:${first} ${name} (${lines} lines)`);
    }
    ts.forEachChild(node, visit);
  };
  visit(sourceFile);
  return found;
}

describe("shape", () => {
  it(`has no function over ${MAX_FUNCTION_LINES} lines in src/ and demo/`, () => {
    const files = ["src", "demo"].flatMap((dir) =>
      readdirSync(join(root, dir), { recursive: true, encoding: "utf8" })
        .filter((name) => name.endsWith(".ts"))
        .map((name) => join(dir, name)),
    );
    expect(files).toContain("src/client.ts");
    expect(files).toContain("src/testing/fake.ts");
    expect(files.flatMap((file) => longFunctions(file, readFileSync(join(root, file), "utf8")))).toEqual([]);
  });
});

describe("error codes", () => {
  // The type users switch on must name every code the client itself throws.
  it("ClientErrorCode lists every literal code passed to new ExportError in src/", () => {
    const errors = readFileSync(join(root, "src/errors.ts"), "utf8");
    const union = /export type ClientErrorCode =([^;]+);/.exec(errors)?.[1] ?? "";
    const declared = new Set([...union.matchAll(/"([A-Z_]+)"/g)].map((match) => match[1]));
    const thrown = readdirSync(join(root, "src"), { recursive: true, encoding: "utf8" })
      .filter((name) => name.endsWith(".ts"))
      .flatMap((name) => [...readFileSync(join(root, "src", name), "utf8").matchAll(/new ExportError\(\s*"([A-Z_]+)"/g)])
      .map((match) => match[1]);
    expect(thrown).toContain("NOT_READY");
    expect(thrown.filter((code) => !declared.has(code))).toEqual([]);
  });
});
