// Uploaded profile photos: which image a byte string is, told by its first
// bytes (a name or a declared type proves nothing), and where the platform
// serves it.
import { createHash } from "node:crypto";
import { fieldError } from "@ttip/runtime";
import type { PhotoRecord } from "./stores/profiles.js";

export type PhotoType = "image/jpeg" | "image/png" | "image/webp";

const PNG = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const startsWith = (b: Uint8Array, sig: number[], at = 0) => b.length >= at + sig.length && sig.every((x, i) => b[at + i] === x);
const ascii = (s: string) => [...s].map((c) => c.charCodeAt(0));

/** JPEG (FF D8 FF), PNG (its 8-byte signature) or WebP (RIFF....WEBP); anything else is undefined. */
export function photoTypeOf(b: Uint8Array): PhotoType | undefined {
  if (startsWith(b, [0xff, 0xd8, 0xff])) return "image/jpeg";
  if (startsWith(b, PNG)) return "image/png";
  if (startsWith(b, ascii("RIFF")) && startsWith(b, ascii("WEBP"), 8)) return "image/webp";
  return undefined;
}

/** The photo to store for `image`, undefined for an empty one (a removal); INVALID_ARGUMENT naming image otherwise. */
export function photoFrom(image: Uint8Array): PhotoRecord | undefined {
  if (image.length === 0) return undefined;
  const contentType = photoTypeOf(image);
  if (!contentType) throw fieldError("image", "must be a JPEG, PNG or WebP picture");
  return { contentType, image, sha256: createHash("sha256").update(image).digest("hex") };
}

const KIND_PATH: Record<number, string> = { 1: "worker", 2: "venue" };

/**
 * Where the web app serves an uploaded photo: /photos/<worker|venue>/<id>
 * beside the tip page's path, versioned by its hash so a new photo is a new
 * URL (and an old one may be cached for ever).
 */
export function photoUrlOf(tipBaseUrl: string, kind: number, ownerId: string, sha256: string): string {
  if (!sha256) return "";
  const base = tipBaseUrl.endsWith("/") ? tipBaseUrl : `${tipBaseUrl}/`;
  return new URL(`../photos/${KIND_PATH[kind]}/${ownerId}?v=${sha256.slice(0, 16)}`, base).toString();
}
