// Drives megajs (the npm MEGA client) against mega-testserver for the interop test in
// tests/interop_megajs.rs. Configuration comes from the environment (never argv, so the
// password does not show in `ps`): MEGA_API_URL, MEGA_EMAIL, MEGA_PASSWORD, DRIVER_MODE.
// Prints one JSON object on stdout.
import { Storage, File, API } from 'megajs'
import crypto from 'node:crypto'

const { MEGA_API_URL: gateway, MEGA_EMAIL: email, MEGA_PASSWORD: password } = process.env
const mode = process.env.DRIVER_MODE || 'full'

// Tests must only ever talk to the local server. megajs builds some File objects (the
// children of a folder link) on its global API object, whose default gateway is the real
// MEGA: point it at the test server, and refuse any request that would leave loopback.
if (!/^http:\/\/127\.0\.0\.1:\d+\/$/.test(gateway || '')) {
  throw new Error(`MEGA_API_URL must be a loopback URL, got ${gateway}`)
}
API.getGlobalApi().gateway = gateway
const realFetch = globalThis.fetch
globalThis.fetch = (url, opts) => {
  const u = new URL(typeof url === 'string' ? url : url.url)
  if (u.hostname !== '127.0.0.1') throw new Error(`refusing non-loopback request to ${u.hostname}`)
  return realFetch(url, opts)
}

// Same generator as interop_content() in the Rust test.
function content (size, seed) {
  const b = Buffer.alloc(size)
  for (let i = 0; i < size; i++) b[i] = ((Math.imul(i, 0x9E3779B1) + seed) >>> 24) & 0xff
  return b
}
const sha256 = (b) => crypto.createHash('sha256').update(b).digest('hex')

// Opens a folder link without logging in; lists every file with its content hash.
async function openFolderLink (link) {
  const folder = File.fromURL(link, { api: API.getGlobalApi() })
  await folder.loadAttributes()
  const files = {}
  const walk = async (node, prefix) => {
    for (const child of node.children || []) {
      const path = prefix + child.name
      if (child.directory) await walk(child, path + '/')
      else files[path] = sha256(await child.downloadBuffer())
    }
  }
  await walk(folder, '')
  return { name: folder.name, files }
}

async function main () {
  if (mode === 'open-folder-link') return openFolderLink(process.env.MEGA_FOLDER_LINK)
  const storage = await new Storage({ email, password, gateway, keepalive: false }).ready
  const out = { user: storage.user, name: storage.name, listing: [], downloads: {}, uploads: {} }
  for (const f of storage.root.children || []) {
    out.listing.push({ name: f.name, size: f.size || 0, directory: f.directory })
  }
  if (mode === 'list') return out
  if (mode === 'pictures') return pictures(storage, out)
  if (mode === 'rename') {
    // Renames every file named in RENAME_FROM (comma-separated) to its name + '-renamed'.
    for (const name of process.env.RENAME_FROM.split(',')) {
      const f = storage.root.children.find(f => f.name === name)
      await f.rename(name + '-renamed')
    }
    await storage.close()
    return out
  }

  // Download and MAC-verify (megajs verifies whole-file downloads) what the Rust client uploaded.
  for (const f of storage.root.children || []) {
    if (!f.directory && f.name.startsWith('from-rust-')) {
      out.downloads[f.name] = sha256(await f.downloadBuffer())
    }
  }
  // Upload files for the Rust client to read, including sizes where megajs' condensed MAC
  // differs from the SDK's (0 and 131072, a chunk boundary).
  for (const size of [0, 16, 131072, 200000, 1048581]) {
    const name = `from-js-${size}.bin`
    const file = await storage.upload({ name, size }, content(size, size % 251)).complete
    out.uploads[name] = { size: file.size || 0, handle: file.nodeId }
  }
  const dir = await storage.mkdir('js-folder')
  await dir.upload({ name: 'inner.txt', size: 5 }, Buffer.from('inner')).complete
  const renameMe = storage.root.children.find(f => f.name === 'from-js-16.bin')
  await renameMe.rename('from-js-16-renamed.bin')
  await renameMe.moveTo(dir)
  // A public link made by megajs, for the Rust client to download.
  const linked = storage.root.children.find(f => f.name === 'from-js-200000.bin')
  out.link = await linked.link()
  // And megajs reading a public link back through the link parser.
  const viaLink = File.fromURL(out.link, { api: storage.api })
  await viaLink.loadAttributes()
  out.link_name = viaLink.name
  out.link_sha256 = sha256(await viaLink.downloadBuffer())
  // A folder link made by megajs (s2 to EXP with cr keys, then l).
  const shared = await storage.mkdir('js-shared')
  await shared.upload({ name: 'in-share.txt', size: 8 }, Buffer.from('shared!!')).complete
  out.folder_link = await shared.shareFolder({})
  await storage.close()
  return out
}

// File attributes: an upload with a thumbnail and a preview (attached in `p`), and a
// thumbnail added to a file the Rust client uploaded (`pfa`). The images come from files the
// Rust test wrote (THUMB_PATH, PREVIEW_PATH).
async function pictures (storage, out) {
  const fs = await import('node:fs')
  // Read for each use: megajs encrypts an image buffer in place.
  const thumbnailImage = fs.readFileSync(process.env.THUMB_PATH)
  const previewImage = fs.readFileSync(process.env.PREVIEW_PATH)
  const body = content(5000, 9)
  const file = await storage.upload({ name: 'js-pic.jpg', size: body.length, thumbnailImage, previewImage }, body).complete
  out.uploads['js-pic.jpg'] = { handle: file.nodeId }
  const plain = storage.root.children.find(f => f.name === 'from-rust-plain.jpg')
  await plain.uploadAttribute('thumbnail', fs.readFileSync(process.env.THUMB_PATH))
  await storage.close()
  return out
}

main().then(
  (out) => { process.stdout.write(JSON.stringify(out) + '\n') },
  (err) => { process.stderr.write(`megajs driver failed: ${err && err.stack || err}\n`); process.exit(1) }
)
