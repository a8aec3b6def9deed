/** Reading what the server sent: JSON that may be anything until checked. */
import type { JobStatus } from "./types.js";

export function parseJSON(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

const jobStatuses: ReadonlySet<string> = new Set<JobStatus>([
  "PENDING",
  "IN_PROGRESS",
  "COMPLETED",
  "FAILED",
  "CANCELLED",
]);

/** The fields the client relies on; the rest is passed through as the server sent it. */
export function isJobShape(value: unknown): boolean {
  return (
    isRecord(value) &&
    typeof value["code"] === "string" &&
    typeof value["status"] === "string" &&
    jobStatuses.has(value["status"]) &&
    typeof value["seq"] === "number" &&
    typeof value["progress"] === "number"
  );
}
