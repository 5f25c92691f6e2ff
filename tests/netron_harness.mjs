// Open a DLC with the open-source Netron viewer's own DLC reader, without a browser.
//
// Usage: node netron_harness.mjs NETRON_PACKAGE_DIR FILE.dlc
//
// NETRON_PACKAGE_DIR is the directory of the installed `netron` Python package,
// which ships Netron's JavaScript; its modules are imported from there at run
// time (nothing of Netron lives in this repository). The harness builds the
// small `context` object Netron's model factories are given (the file as a
// stream, its ZIP entries as read by Netron's zip.js, the op metadata JSON,
// sibling-module loading), calls the DLC factory's match() and open(), and
// prints what Netron decoded and what it would show as JSON on stdout.
// Any failure (no match, a thrown error) exits non-zero with the message on stderr.

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [netronDir, file] = process.argv.slice(2);
if (!netronDir || !file) {
    process.stderr.write('usage: node netron_harness.mjs NETRON_PACKAGE_DIR FILE.dlc\n');
    process.exit(2);
}

const moduleUrl = (name) => pathToFileURL(path.join(netronDir, name)).href;

// The op-type metadata Netron's view builds from `<format>-metadata.json`:
// types by name (and by numeric identifier), attributes by type and name.
class Metadata {
    constructor(types) {
        this._types = new Map();
        for (const type of Array.isArray(types) ? types : []) {
            this._types.set(type.name, type);
            if (type.identifier !== undefined) {
                this._types.set(type.identifier, type);
            }
        }
    }

    type(name) {
        if (!this._types.has(name)) {
            this._types.set(name, { name: String(name) });
        }
        return this._types.get(name);
    }

    attribute(type, name) {
        const attributes = this.type(type).attributes;
        return Array.isArray(attributes) ? attributes.find((a) => a.name === name) || null : null;
    }
}

class Context {
    constructor(identifier, stream, modules) {
        this.identifier = identifier;
        this.stream = stream;
        this._modules = modules;
        this._content = new Map();
        this.type = undefined;
        this.value = undefined;
    }

    async peek(type) {
        if (!this._content.has(type)) {
            let content;
            if (type === 'zip') {
                const archive = this._modules.zip.Archive.open(this.stream, 'zip');
                content = archive ? archive.entries : undefined;
            }
            this._content.set(type, content);
        }
        return this._content.get(type);
    }

    set(type, value) {
        this.type = type;
        this.value = value;
        return type;
    }

    async require(id) {
        return import(moduleUrl(`${id.replace(/^\.\//, '')}.js`));
    }

    async metadata(name) {
        const types = JSON.parse(await readFile(path.join(netronDir, name), 'utf-8'));
        return new Metadata(types);
    }

    async fetch(name) {
        // A DLC is one file: there are no sibling files to fetch.
        throw new Error(`no file '${name}' next to '${this.identifier}'`);
    }
}

const names = (args) => args.flatMap((arg) => (Array.isArray(arg.value) ? arg.value : []))
    .filter((value) => value && typeof value.name === 'string').map((value) => value.name);

const sha256 = (bytes) => (bytes instanceof Uint8Array ? createHash('sha256').update(bytes).digest('hex') : null);

// Attribute values as JSON can carry them; tensor-valued ones by content hash.
const attribute = (attr) => {
    if (attr.type === 'tensor') {
        return { name: attr.name, type: 'tensor', dtype: attr.data.dtype, sha256: sha256(attr.data.data) };
    }
    const value = attr.data;
    return { name: attr.name, type: attr.type || null, value: typeof value === 'object' && value !== null ? String(value) : value };
};

// What Netron's reader decoded: every graph of the container, all its nodes,
// and (v4) every tensor with the weight bytes Netron attached to it.
const decoded = (graph) => ({
    name: graph.name,
    nodes: graph.nodes.map((node) => ({
        name: node.name, type: node.type,
        inputs: Array.from(node.inputs || []), outputs: Array.from(node.outputs || []),
        attributes: Array.from(node.attributes || []).map(attribute),
    })),
    tensors: Array.isArray(graph.tensors) ? graph.tensors.map((tensor) => ({
        name: tensor.name, location: tensor.location, dtype: tensor.dtype,
        shape: Array.from(tensor.shape || []), sha256: sha256(tensor.data),
    })) : null,
});

// What Netron would draw: the graph modules of its model, with their values
// resolved (shapes and dtypes printed as the sidebar does).
const shown = (graph) => {
    const values = new Set();
    const nodes = graph.nodes.map((node) => {
        for (const arg of [...node.inputs, ...node.outputs]) {
            for (const value of Array.isArray(arg.value) ? arg.value : []) {
                values.add(value);
                if (value.type) {
                    value.type.toString();
                }
            }
        }
        return {
            name: node.name, type: node.type.name,
            inputs: names(node.inputs), outputs: names(node.outputs),
            attributes: node.attributes.length,
        };
    });
    return {
        name: graph.name,
        inputs: graph.inputs.length,
        nodes,
        values: values.size,
        initializers: Array.from(values).filter((value) => value.initializer).length,
    };
};

try {
    const modules = {
        base: await import(moduleUrl('base.js')),
        zip: await import(moduleUrl('zip.js')),
        dlc: await import(moduleUrl('dlc.js')),
    };
    await modules.zip.Archive.import();
    const bytes = new Uint8Array(await readFile(file));
    const context = new Context(path.basename(file), new modules.base.BinaryStream(bytes), modules);
    const factory = new modules.dlc.ModelFactory();
    const type = await factory.match(context);
    if (!type) {
        throw new Error('Netron\'s DLC reader does not recognise the file');
    }
    if (context.stream.position !== 0) {
        throw new Error('Netron\'s DLC reader left the stream moved after match()');
    }
    const model = await factory.open(context);
    if (typeof model.format !== 'string' || model.format.length === 0) {
        throw new Error('Netron\'s model has no format name');
    }
    const container = context.value;
    const report = {
        type,
        format: model.format,
        version: container.version || null,
        graphs: container.graphs.map(decoded),
        modules: (model.modules || []).map(shown),
    };
    process.stdout.write(`${JSON.stringify(report)}\n`);
} catch (error) {
    process.stderr.write(`${error && error.stack ? error.stack : error}\n`);
    process.exit(1);
}
