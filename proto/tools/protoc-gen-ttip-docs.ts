// A local buf plugin: `buf generate` writes proto/docs (the API reference and
// the OpenAPI document) with the code, from the same descriptors and comments.
import { create, createFileRegistry, fromBinary, toBinary } from "@bufbuild/protobuf";
import { CodeGeneratorRequestSchema, CodeGeneratorResponse_Feature, CodeGeneratorResponseSchema, FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { generated } from "./api-docs.js";

const chunks: Buffer[] = [];
for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
const request = fromBinary(CodeGeneratorRequestSchema, Buffer.concat(chunks));
const registry = createFileRegistry(create(FileDescriptorSetSchema, { file: request.protoFile }));
const response = create(CodeGeneratorResponseSchema, {
  supportedFeatures: BigInt(CodeGeneratorResponse_Feature.PROTO3_OPTIONAL),
  file: [...generated(registry)].map(([name, content]) => ({ name, content })),
});
process.stdout.write(toBinary(CodeGeneratorResponseSchema, response));
