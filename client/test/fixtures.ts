/**
 * The shared wire fixtures (docs/fixtures/*.json), typed. The Go types
 * (backend/internal/job/fixtures_test.go), docs/openapi.yaml (the BFF's
 * openapi_test.go) and the client's types (fixtures.test-d.ts) are all checked
 * against these files, so none of them can rename or drop a field alone.
 *
 * A JSON import types `status` as `string`; `withStatus` checks it at run time
 * and narrows it to its literal, so each fixture must be assignable to the
 * client's types (`satisfies`), and fixtures.test-d.ts checks the keys both ways.
 */
import cancelledJSON from "../../docs/fixtures/job-cancelled.json" with { type: "json" };
import completedJSON from "../../docs/fixtures/job-completed.json" with { type: "json" };
import failedJSON from "../../docs/fixtures/job-failed.json" with { type: "json" };
import inProgressJSON from "../../docs/fixtures/job-in-progress.json" with { type: "json" };
import pendingJSON from "../../docs/fixtures/job-pending.json" with { type: "json" };
import errorEventJSON from "../../docs/fixtures/error-event.json" with { type: "json" };
import type { ExportStatus, Job, StreamErrorEvent } from "../src/index.js";

/** T with its `status: string` narrowed to the literal S. */
export type WithStatus<T extends { status: string }, S extends ExportStatus> = Omit<T, "status"> & {
  readonly status: S;
};

function withStatus<S extends ExportStatus>(status: S) {
  return <T extends { status: string }>(fixture: T): WithStatus<T, S> => {
    if (fixture.status !== status) throw new Error(`fixture has status ${fixture.status}, want ${status}`);
    return fixture as unknown as WithStatus<T, S>; // checked just above
  };
}

export const pending = withStatus("PENDING")(pendingJSON) satisfies Job;
export const inProgress = withStatus("IN_PROGRESS")(inProgressJSON) satisfies Job;
export const completed = withStatus("COMPLETED")(completedJSON) satisfies Job;
export const failed = withStatus("FAILED")(failedJSON) satisfies Job;
export const cancelled = withStatus("CANCELLED")(cancelledJSON) satisfies Job;
export const errorEvent = withStatus("ERROR")(errorEventJSON) satisfies StreamErrorEvent;

/** Every job fixture by its file name in docs/fixtures. */
export const jobFixtures = {
  "job-pending.json": pending,
  "job-in-progress.json": inProgress,
  "job-completed.json": completed,
  "job-failed.json": failed,
  "job-cancelled.json": cancelled,
} as const;

export type JobFixture = (typeof jobFixtures)[keyof typeof jobFixtures];
