"use client";
import { useState } from "react";
import { plainError } from "../../lib/errors";
import { workerLocale, workerT } from "../../lib/worker-i18n";

/** The worker's language and its words; errors in the same language. */
export function useT() {
  const [locale] = useState(() => workerLocale(document.cookie, navigator.languages ?? [navigator.language]));
  const [t] = useState(() => workerT(locale));
  return { locale, t, err: (e: unknown) => plainError(e, locale) };
}
