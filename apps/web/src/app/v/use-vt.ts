"use client";
import { useState } from "react";
import { plainError } from "../../lib/errors";
import { venueT } from "../../lib/venue-i18n";
import { workerLocale } from "../../lib/worker-i18n";

/** The manager's language (the same choice as the worker screens') and its words; errors in the same language. */
export function useVT() {
  const [locale] = useState(() => workerLocale(document.cookie, navigator.languages ?? [navigator.language]));
  const [t] = useState(() => venueT(locale));
  return { locale, t, err: (e: unknown) => plainError(e, locale) };
}
