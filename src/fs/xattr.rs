//! Extended attributes of mounted files and folders, all read-only:
//!
//! * `user.mega.handle`: the node's handle (as MEGA's apps and `megacmd` show it).
//! * `user.mega.versions` (files): how many previous versions it has (they are under the
//!   versions folder, see [`super::special`]).
//! * `user.mega.link`: the node's public link, created by reading it if there is none yet
//!   (owner only; not on a read-only mount). Never listed: a tool that copies every extended
//!   attribute it lists (`cp -a`, `rsync -X`) must not publish every file it copies.
//!
//! Any other name has no value (ENODATA), quickly: the kernel asks for some (for example
//! `security.capability` before writes). Setting or removing attributes is not supported.

use super::inodes::Target;
use super::{FsError, MegaFs, Result};
use crate::tree::NodeHandle;

pub const HANDLE: &str = "user.mega.handle";
pub const VERSIONS: &str = "user.mega.versions";
pub const LINK: &str = "user.mega.link";

impl MegaFs {
    /// The node an inode stands for, for its attributes (a file not uploaded yet has none).
    fn xattr_node(&self, ino: u64) -> Result<NodeHandle> {
        match self.target(ino)? {
            Target::Node(h) => Ok(h),
            Target::Pending { .. } | Target::NewDir { .. } | Target::Virtual(_) => {
                Err(FsError::NoAttr)
            }
        }
    }

    /// The names `listxattr` shows.
    pub fn listxattr(&self, ino: u64) -> Result<Vec<&'static str>> {
        let h = match self.xattr_node(ino) {
            Ok(h) => h,
            Err(FsError::NoAttr) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let n = self.client.node(&h).map_err(|_| FsError::NotFound)?;
        let mut out = vec![HANDLE];
        if n.is_file() {
            out.push(VERSIONS);
        }
        Ok(out)
    }

    /// An attribute's value; reading [`LINK`] may create the link.
    pub async fn getxattr(&self, ino: u64, name: &str) -> Result<Vec<u8>> {
        if ![HANDLE, VERSIONS, LINK].contains(&name) {
            return Err(FsError::NoAttr);
        }
        let h = self.xattr_node(ino)?;
        let n = self.client.node(&h).map_err(|_| FsError::NotFound)?;
        match name {
            HANDLE => Ok(n.handle.0.into_bytes()),
            VERSIONS if n.is_file() => Ok(self
                .client
                .view(|t| t.versions(&h).len())
                .to_string()
                .into_bytes()),
            LINK => {
                self.writable()?;
                self.not_frozen(&h)?;
                if self.client.view(|t| t.inshare_of(&h).is_some()) {
                    return Err(FsError::AccessDenied(
                        "only the owner can make a public link".into(),
                    ));
                }
                Ok(self.client.export(&h).await?.into_bytes())
            }
            _ => Err(FsError::NoAttr),
        }
    }
}
