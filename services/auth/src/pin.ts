import { hash, verify } from "@node-rs/argon2";

// argon2id (the library's default algorithm) with OWASP's minimum: 19 MiB, 2 passes.
const ARGON2 = { memoryCost: 19_456, timeCost: 2, parallelism: 1 };

export function hashPin(pin: string): Promise<string> {
  return hash(pin, ARGON2);
}

export function verifyPin(pinHash: string, pin: string): Promise<boolean> {
  return verify(pinHash, pin).catch(() => false);
}

/** Why a PIN is too easy to guess, or undefined when it is acceptable. */
export function weakPinReason(pin: string, birthYear?: number | null): string | undefined {
  if (!/^\d{4,6}$/.test(pin)) return "a PIN is 4 to 6 digits";
  if (/^(\d)\1+$/.test(pin)) return "a PIN may not repeat one digit";
  const digits = [...pin].map(Number);
  const steps = new Set(digits.slice(1).map((d, i) => d - digits[i]));
  if (steps.size === 1 && (steps.has(1) || steps.has(-1))) return "a PIN may not be a run of sequential digits";
  // 1212, 121212, 123123: a short pattern repeated.
  if (/^(\d{2})\1+$/.test(pin) || /^(\d{3})\1$/.test(pin)) return "a PIN may not repeat a short pattern";
  if (birthYear && pin.includes(String(birthYear))) return "a PIN may not contain the birth year";
  return undefined;
}
