// The Genesys AudioHook reference server session, unmodified, behind a small `ws` server.
//
// Usage: NODE_PATH=<npm env>/node_modules node server.js REFERENCE_APP_DIR PORT API_KEY SECRET_B64
//
// Every upgrade goes to the reference `createServerSession` (app/audiohook/src/server). The
// request signature is checked with the reference verifier (app/audiohook/src/httpsignature)
// with the same rules as the reference app's authenticator (app/src/authenticator.ts: X-API-KEY
// required, nonce >= 22 chars, keyid == X-API-KEY, the six signed components, 10 s max age),
// and the organization id must match the `open` message. Each log line is JSON on stdout; at
// the end of a session a line {"summary": ...} says what the session saw.
'use strict';
const path = require('path');
require('ts-node').register({
    transpileOnly: true,
    skipProject: true,
    compilerOptions: { module: 'commonjs', target: 'es2020', esModuleInterop: true },
});
const { WebSocketServer } = require('ws');

const [referenceApp, port, apiKey, secretB64] = process.argv.slice(2);
const { createServerSession } = require(path.join(referenceApp, 'audiohook/src/server'));
const {
    verifySignature,
    withFailure,
    queryCanonicalizedHeaderField,
} = require(path.join(referenceApp, 'audiohook/src/httpsignature'));

const log = (level, session, msg) => {
    process.stdout.write(JSON.stringify({ level, session, msg }) + '\n');
};
const makeLogger = (session) => {
    const logger = {};
    for (const level of ['fatal', 'error', 'warn', 'info', 'debug', 'trace']) {
        logger[level] = (msg) => log(level, session, msg);
    }
    return logger;
};

const verifyRequest = async (request, logger) => {
    const headers = request.headers;
    const key = queryCanonicalizedHeaderField(headers, 'x-api-key');
    if (!key) {
        return withFailure('PRECONDITION', 'Missing "X-API-KEY" header field');
    }
    return verifySignature({
        headerFields: headers,
        requiredComponents: [
            '@request-target', '@authority', 'audiohook-organization-id',
            'audiohook-session-id', 'audiohook-correlation-id', 'x-api-key',
        ],
        maxSignatureAge: 10,
        derivedComponentLookup: (name) => (name === '@request-target' ? request.url : null),
        keyResolver: async (parameters) => {
            logger.debug(`Signature Parameters: ${JSON.stringify(parameters)}`);
            if (!parameters.nonce) {
                return withFailure('PRECONDITION', 'Missing "nonce" signature parameter');
            } else if (parameters.nonce.length < 22) {
                return withFailure('PRECONDITION', 'Provided "nonce" signature parameter is too small');
            }
            if (parameters.keyid !== key) {
                return withFailure('PRECONDITION', 'X-API-KEY header field and signature keyid mismatch');
            }
            if (key !== apiKey) {
                return { code: 'BADKEY', key: require('crypto').randomBytes(32) };
            }
            return { code: 'GOODKEY', key: Buffer.from(secretB64, 'base64') };
        },
    });
};

const wss = new WebSocketServer({ host: '127.0.0.1', port: Number(port) });
wss.on('listening', () => log('info', null, `listening on ${port}`));
wss.on('connection', (ws, request) => {
    const id = queryCanonicalizedHeaderField(request.headers, 'audiohook-session-id');
    const logger = makeLogger(id);
    logger.info(`upgrade ${request.url} headers ${JSON.stringify(request.headers)}`);
    const session = createServerSession({ ws, id, logger });
    const seen = { clientMessages: [], audioBytes: 0, audioFrames: 0, verify: null };
    const verified = verifyRequest(request, logger).then((result) => {
        seen.verify = result;
        logger.info(`Signature verification resolved: ${JSON.stringify(result)}`);
        if (result.code !== 'VERIFIED') {
            session.disconnect('unauthorized', result.reason ? `${result.code}: ${result.reason}` : result.code);
        }
        return result;
    });
    session.addAuthenticator(async (s, openParams) => {
        const org = queryCanonicalizedHeaderField(request.headers, 'audiohook-organization-id');
        if (openParams.organizationId !== org) {
            return 'Mismatch between "organizationId" open parameter and "audiohook-organization-id" header field';
        }
        const result = await verified;
        return result.code === 'VERIFIED' ? true : `${result.code}: ${result.reason || ''}`;
    });
    session.on('clientMessage', (message) => {
        seen.clientMessages.push({ type: message.type, seq: message.seq, serverseq: message.serverseq, position: message.position, parameters: message.parameters });
    });
    session.on('audio', (frame) => {
        seen.audioFrames += 1;
        seen.audioBytes += frame.sampleCount * frame.channels.length;
    });
    session.addCloseHandler((s, params) => {
        logger.info(`close handler: ${JSON.stringify(params)}`);
        return () => {
            log('info', id, JSON.stringify({ summary: { ...seen, state: session.state } }));
        };
    });
    ws.on('close', (code) => {
        log('info', id, JSON.stringify({ socketClosed: code, state: session.state }));
    });
});
