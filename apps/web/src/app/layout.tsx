import type { Metadata, Viewport } from "next";
import { cookies, headers } from "next/headers";
import type { ReactNode } from "react";
import { pickLocale } from "../lib/i18n";
import "./globals.css";

export const metadata: Metadata = { title: "TTIP", description: "Tip the people who serve you, by M-Pesa." };
export const viewport: Viewport = { width: "device-width", initialScale: 1, themeColor: "#0a6b3d" };

export default async function RootLayout({ children }: { children: ReactNode }) {
  const locale = pickLocale((await cookies()).get("ttip_lang")?.value, (await headers()).get("accept-language"));
  return (
    <html lang={locale}>
      <body>{children}</body>
    </html>
  );
}
