// A worker's (or venue's) uploaded photo, from the qr service, on the
// platform's own host: the tip page loads nothing from anyone else. The URL
// carries the photo's version (?v=), so a browser may keep it for a year.
import { Code, ConnectError } from "@connectrpc/connect";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { isUuid } from "@ttip/runtime/uuid";
import { serverClient } from "../../../../lib/api";

export const dynamic = "force-dynamic";

const KINDS: Record<string, OwnerKind> = { worker: OwnerKind.WORKER, venue: OwnerKind.VENUE };

const missing = () => new Response("no such photo\n", { status: 404, headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" } });

export async function GET(req: Request, { params }: { params: Promise<{ kind: string; ownerId: string }> }): Promise<Response> {
  const { kind, ownerId } = await params;
  const version = new URL(req.url).searchParams.get("v") ?? "";
  const ownerKind = KINDS[kind];
  if (!ownerKind || !isUuid(ownerId)) return missing();
  try {
    const photo = await serverClient(QrService).getProfilePhoto({ ownerKind, ownerId });
    return new Response(Buffer.from(photo.image), {
      headers: {
        "content-type": photo.contentType,
        "content-length": String(photo.image.length),
        // Kept for a year only under its own version: a URL without one, or with another, is asked again each time
        // (kept, it would show a replaced or removed photo for a year).
        "cache-control": version.length >= 16 && photo.sha256.startsWith(version) ? "public, max-age=31536000, immutable" : "no-cache",
        etag: `"${photo.sha256}"`,
        // Served as the picture it was checked to be, never anything a browser would run.
        "x-content-type-options": "nosniff",
        "content-security-policy": "default-src 'none'; sandbox; frame-ancestors 'none'",
        "x-frame-options": "DENY",
      },
    });
  } catch (err) {
    if (ConnectError.from(err).code === Code.NotFound) return missing();
    throw err;
  }
}
