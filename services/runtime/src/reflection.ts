import { createRegistry, toBinary, type DescFile, type DescService, type MessageInitShape, type Registry } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import {
  ServerReflection,
  type ServerReflectionRequest,
  ServerReflectionResponseSchema,
} from "@ttip/proto/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1Alpha } from "@ttip/proto/grpc/reflection/v1alpha/reflection_pb.js";

const NOT_FOUND = 5;

/**
 * gRPC server reflection (v1, and v1alpha for older grpcurl), answered from the
 * descriptors protoc-gen-es embeds, so `buf curl` and grpcurl work with no
 * .proto files at hand.
 */
export function registerReflection(router: ConnectRouter, services: DescService[]): void {
  const answer = reflectionAnswers(descriptorsOf([...services, ServerReflection, ServerReflectionV1Alpha]));
  async function* serverReflectionInfo(requests: AsyncIterable<ServerReflectionRequest>) {
    for await (const req of requests) {
      yield { host: req.host, originalRequest: req, messageResponse: answer(req) };
    }
  }
  router.service(ServerReflection, { serverReflectionInfo });
  // v1alpha has the same messages under another package; the wire format is identical.
  router.service(ServerReflectionV1Alpha, { serverReflectionInfo } as never);
}

/** What reflection answers from: the services' files and their imports, by name and in a registry. */
interface Descriptors {
  files: Map<string, DescFile>;
  registry: Registry;
  serviceNames: string[];
}

function descriptorsOf(all: DescService[]): Descriptors {
  const files = new Map<string, DescFile>();
  const addFile = (file: DescFile) => {
    if (files.has(file.name)) return;
    files.set(file.name, file);
    file.dependencies.forEach(addFile);
  };
  all.forEach((s) => addFile(s.file));
  return { files, registry: createRegistry(...files.values()), serviceNames: [...new Set(all.map((s) => s.typeName))] };
}

type ReflectionAnswer = MessageInitShape<typeof ServerReflectionResponseSchema>["messageResponse"];

/** The answer to each kind of reflection request. */
function reflectionAnswers({ files, registry, serviceNames }: Descriptors): (req: ServerReflectionRequest) => ReflectionAnswer {
  return (req) => {
    const r = req.messageRequest;
    switch (r.case) {
      case "listServices":
        return {
          case: "listServicesResponse",
          value: {
            service: serviceNames.map((name) => ({ name })),
          },
        };
      case "fileByFilename": {
        const file = files.get(r.value);
        return file ? fileResponse(file) : notFound(`file ${r.value}`);
      }
      case "fileContainingSymbol": {
        const file = fileOfSymbol(registry, r.value);
        return file ? fileResponse(file) : notFound(`symbol ${r.value}`);
      }
      case "fileContainingExtension": {
        const message = registry.getMessage(r.value.containingType);
        const ext = message && registry.getExtensionFor(message, r.value.extensionNumber);
        return ext ? fileResponse(ext.file) : notFound(`extension ${r.value.extensionNumber} of ${r.value.containingType}`);
      }
      case "allExtensionNumbersOfType": {
        const message = registry.getMessage(r.value);
        if (!message) return notFound(`type ${r.value}`);
        return {
          case: "allExtensionNumbersResponse",
          value: { baseTypeName: r.value, extensionNumber: extensionNumbersOf(registry, message.typeName) },
        };
      }
      default:
        return notFound("request");
    }
  };
}

function notFound(what: string) {
  return { case: "errorResponse" as const, value: { errorCode: NOT_FOUND, errorMessage: `${what} not found` } };
}

function fileResponse(file: DescFile) {
  return { case: "fileDescriptorResponse" as const, value: { fileDescriptorProto: withDependencies(file) } };
}

/** The file and everything it imports; clients skip what they already have. */
function withDependencies(file: DescFile): Uint8Array[] {
  const out = new Map<string, Uint8Array>();
  const visit = (f: DescFile) => {
    if (out.has(f.name)) return;
    out.set(f.name, toBinary(FileDescriptorProtoSchema, f.proto));
    f.dependencies.forEach(visit);
  };
  visit(file);
  return [...out.values()];
}

function fileOfSymbol(registry: Registry, symbol: string): DescFile | undefined {
  const desc = registry.get(symbol);
  if (desc) return desc.file;
  // A method: "pkg.Service.Method".
  const service = registry.getService(symbol.slice(0, symbol.lastIndexOf(".")));
  return service?.file;
}

/** The field numbers of every extension of a message type. */
function extensionNumbersOf(registry: Registry, typeName: string): number[] {
  const numbers: number[] = [];
  for (const desc of registry) {
    if (desc.kind === "extension" && desc.extendee.typeName === typeName) numbers.push(desc.number);
  }
  return numbers;
}
