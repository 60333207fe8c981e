//! Large accounts: `mega-testserver seed` fills an account with encrypted folders and files
//! directly in the store, and the client decrypts every one of them.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Env, PASSWORD};
use mega_testserver::seed::{seed, SeedPlan};
use mega_testserver::UserOptions;

#[tokio::test]
async fn a_seeded_account_decrypts_completely() {
    let env = Env::start().await;
    for (email, v1) in [("seed@example.com", false), ("seed1@example.com", true)] {
        env.user(
            email,
            UserOptions {
                v1,
                ..Default::default()
            },
        )
        .await;
        let plan = SeedPlan {
            folders: 300,
            files: 2_000,
            depth: 3,
        };
        let store = env.server.store();
        assert_eq!(seed(store, email, PASSWORD, plan).unwrap(), 2_300);
        assert!(
            seed(store, email, "wrong", plan).is_err(),
            "the password is checked"
        );
        let c = env.login(email).await;
        let f = {
            let tree = c.read_tree();
            assert_eq!(tree.len(), 2_303, "the three roots and every seeded node");
            assert!(tree.undecryptable().next().is_none());
            let files: Vec<_> = tree.iter().filter(|n| n.is_file()).collect();
            assert_eq!(files.len(), 2_000);
            // Three levels of folders below the root, files spread over all of them.
            let deepest = files
                .iter()
                .map(|f| tree.path_of(&f.handle).matches('/').count())
                .max()
                .unwrap();
            assert_eq!(deepest, 4, "/level1/level2/level3/file");
            let first = tree.resolve("/folder 0000000").unwrap().handle.clone();
            assert!(!tree.children(&first).is_empty());
            files[0].handle.clone()
        };
        assert!(
            c.download_to_vec(&f).await.unwrap().is_empty(),
            "an empty file, verified"
        );
    }
}
