/** The README's recipes are the tested files themselves, character for character. */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");

describe("README recipes", () => {
  it.each(["recipes/tanstack-query.tsx", "recipes/swr.tsx", "recipes/export-button.tsx", "recipes/export-button.test.tsx"])("shows %s as it is", (file) => {
    const marker = `<!-- ${file} -->\n\`\`\`tsx\n`;
    const start = readme.indexOf(marker);
    expect(start, `README has no ${marker.trim()}`).toBeGreaterThanOrEqual(0);
    const body = readme.slice(start + marker.length, readme.indexOf("\n```", start + marker.length) + 1);
    expect(body).toBe(readFileSync(new URL(`../${file}`, import.meta.url), "utf8"));
  });
});
