"use client";
import { useMutation, useQuery, useTransport } from "@connectrpc/connect-query";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { useState } from "react";
import { ImageFormat, OwnerKind, QrCodeStatus } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { loadSession } from "../../../lib/session";
import { useWrite, type Send } from "../../../lib/use-write";
import { WorkerNav } from "../nav";
import { useT } from "../use-t";
import type { WorkerKey } from "../../../lib/worker-i18n";

const FORMATS: [ImageFormat, string | WorkerKey, string][] = [
  [ImageFormat.PNG, "PNG", "png"],
  [ImageFormat.SVG, "SVG", "svg"],
  [ImageFormat.PDF, "tableCard", "pdf"],
];

/** My QR: preview, downloads, a new code, rotate and revoke. */
export default function MyQr() {
  const transport = useTransport();
  const { t, err } = useT();
  const [session] = useState(() => loadSession());
  const [error, setError] = useState("");
  const codes = useQuery(QrService.method.listQrCodes, { ownerKind: OwnerKind.WORKER, ownerId: session?.userId ?? "" }, { enabled: !!session });
  // A code shows its owner's name: a worker who never saved one (a new sign-up) gives it with their first code.
  const profile = useQuery(QrService.method.getProfile, { ownerKind: OwnerKind.WORKER, ownerId: session?.userId ?? "" }, { enabled: !!session, retry: false });
  // Only when qr says there is none: a failed read (the network) is not a missing name, and saving one would replace it.
  const needsName = profile.error ? ConnectError.from(profile.error).code === Code.NotFound : profile.isFetched && !profile.data?.profile;
  const putProfile = useMutation(QrService.method.putProfile);
  const create = useMutation(QrService.method.createQrCode);
  const rotate = useMutation(QrService.method.rotateQrCode);
  const revoke = useMutation(QrService.method.revokeQrCode);
  // One write at a time; a new or replaced code's key survives a lost answer.
  const write = useWrite();
  // `intent`: which code a keyed write is for. One guard serves every code's Replace: before, a retry after a lost
  // answer on one code sent its key for another's, refused as another request under it.
  const run = (f: (send: Send) => Promise<unknown>, intent?: string) => write.run(async (send) => {
    setError("");
    await f(send);
    await codes.refetch();
  }, (x) => setError(err(x)), intent);
  // A PNG is the bare code (qr refuses a caption on it); the SVG and the table card carry the worker's name.
  const save = (id: string, format: ImageFormat, ext: string) =>
    run(async () => {
      const res = await createClient(QrService, transport).renderQrCode({ qrCodeId: id, format, caption: format !== ImageFormat.PNG });
      const url = URL.createObjectURL(new Blob([res.content as BlobPart], { type: res.contentType }));
      const a = Object.assign(document.createElement("a"), { href: url, download: `ttip-qr.${ext}` });
      a.click();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    });
  const active = (codes.data?.qrCodes ?? []).filter((c) => c.status === QrCodeStatus.ACTIVE);
  return (
    <>
      <WorkerNav />
      <h1>{t("myQr")}</h1>
      {error ? <p className="error" role="alert">{error}</p> : null}
      {active.map((c) => (
        <section key={c.qrCodeId} className="notice">
          <p>{t("code")} <strong>{c.shortCode}</strong></p>
          <p><a href={c.url}>{t("openTipPage")}</a></p>
          {FORMATS.map(([format, label, ext]) => (
            <button key={ext} type="button" className="secondary" onClick={() => save(c.qrCodeId, format, ext)}>{t("download", { what: label === "tableCard" ? t("tableCard") : label })}</button>
          ))}
          <button type="button" className="secondary" disabled={write.busy} onClick={() => run((send) => send((key) => rotate.mutateAsync({ qrCodeId: c.qrCodeId, idempotencyKey: key })), `replace ${c.qrCodeId}`)}>{t("replace")}</button>
          <button type="button" className="secondary" disabled={write.busy} onClick={() => run(() => revoke.mutateAsync({ qrCodeId: c.qrCodeId, reason: "revoked by the worker" }))}>{t("switchOff")}</button>
        </section>
      ))}
      {active.length === 0 && session ? (
        <form onSubmit={(e) => {
          e.preventDefault();
          const name = String(new FormData(e.currentTarget).get("name") ?? "").trim();
          if (needsName && (!name || name.length > 60)) return setError(t("err_name"));
          void run(async (send) => {
            if (needsName) {
              await putProfile.mutateAsync({ ownerKind: OwnerKind.WORKER, ownerId: session.userId, displayName: name, photoUrl: "" });
              await profile.refetch();
            }
            await send((key) => create.mutateAsync({ ownerKind: OwnerKind.WORKER, ownerId: session.userId, idempotencyKey: key }));
          }, "create");
        }}>
          {needsName ? <><label className="field" htmlFor="qr-name">{t("name")}</label><input id="qr-name" name="name" type="text" autoComplete="name" maxLength={60} /></> : null}
          <button type="submit" disabled={write.busy || !profile.isFetched}>{t("makeQr")}</button>
        </form>
      ) : null}
    </>
  );
}
