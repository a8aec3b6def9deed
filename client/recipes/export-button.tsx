import { useState } from "react";
import { useExport, useExportClient } from "@exportstream/client/react";

/** Starts an export of `rows` rows, shows how it goes, downloads its file once done. */
export function ExportButton({ rows }: { rows: number }) {
  const client = useExportClient();
  const [code, setCode] = useState<string>();
  const { status, progress, error } = useExport(code, { downloadWhenCompleted: true });
  const start = () => client.start({ rows }).then((job) => setCode(job.code));
  return (
    <div>
      <button onClick={start} disabled={status === "PENDING" || status === "IN_PROGRESS"}>
        Export
      </button>
      {status === "PENDING" && <p role="status">Waiting…</p>}
      {status === "IN_PROGRESS" && <p role="status">Exporting… {progress}%</p>}
      {status === "COMPLETED" && <p role="status">Done: the download has started</p>}
      {error && <p role="alert">Export failed ({error.code})</p>}
    </div>
  );
}
