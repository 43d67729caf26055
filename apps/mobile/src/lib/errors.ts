// Every error from the gateway as a plain sentence in the worker's language: the web app's
// sentences in English and Swahili, one copy (a copy of its own here had fallen behind:
// an overloaded server read as a lost connection, indexed fields went unread).
export { plainError } from "@ttip/web-lib/errors";
