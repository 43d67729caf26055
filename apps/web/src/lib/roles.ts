// What a worker does, as the tip page shows it under their name. The profile
// stores a key (qr's Profile.role); the known ones are shown in the reader's
// language, anything else exactly as the worker wrote it.
import type { Locale } from "./i18n";

export const WORKER_ROLES = ["waiter", "bartender", "barista", "chef", "host", "housekeeping", "driver", "guide", "delivery", "attendant", "stylist", "security"] as const;
export type WorkerRole = (typeof WORKER_ROLES)[number];

const LABELS: Record<Locale, Record<WorkerRole, string>> = {
  en: {
    waiter: "Waiter",
    bartender: "Bartender",
    barista: "Barista",
    chef: "Chef",
    host: "Host",
    housekeeping: "Housekeeping",
    driver: "Driver",
    guide: "Tour guide",
    delivery: "Delivery rider",
    attendant: "Attendant",
    stylist: "Stylist",
    security: "Security guard",
  },
  sw: {
    waiter: "Mhudumu",
    bartender: "Mhudumu wa baa",
    barista: "Mtayarishaji kahawa",
    chef: "Mpishi",
    host: "Mkaribishaji",
    housekeeping: "Mhudumu wa usafi",
    driver: "Dereva",
    guide: "Kiongozi wa watalii",
    delivery: "Msambazaji",
    attendant: "Mhudumu wa kituo",
    stylist: "Msusi",
    security: "Mlinzi",
  },
};

export const isWorkerRole = (role: string): role is WorkerRole => (WORKER_ROLES as readonly string[]).includes(role);

/** The role in `locale` when it is one of ours, else as written. */
export function roleLabel(role: string, locale: Locale): string {
  return isWorkerRole(role) ? LABELS[locale][role] : role;
}

/** A role labelled in every language, for the tests that hold both dictionaries to the same keys. */
export const roleDictionaries = LABELS;
