// Builds dist/: the generated contracts (buf with the local protoc-gen-es, no
// remote plugins) and the signer and webhook verifier compiled by tsc.
import { execFileSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const bin = (name) => path.join(root, "node_modules", ".bin", name);
execFileSync(bin("buf"), ["generate", "--template", "sdk/typescript/buf.gen.yaml"], { cwd: root, stdio: "inherit", env: { ...process.env, PATH: `${path.join(root, "node_modules", ".bin")}:${process.env.PATH}` } });
execFileSync(bin("tsc"), ["-p", path.join(here, "tsconfig.json")], { cwd: here, stdio: "inherit" });
