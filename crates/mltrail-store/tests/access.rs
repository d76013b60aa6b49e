//! Users and service tokens in the store: what is kept (hashes, digests, never the secret),
//! how credentials are checked, and that the trail catches a hash swapped in by hand.

use mltrail_core::Scope;
use mltrail_store::access::tokens::{self, TokenCheck};
use mltrail_store::access::users;
use mltrail_store::{audit, MetaStore, StoreConfig, StoreErrorKind};
use sqlx::Connection;

async fn open(dir: &tempfile::TempDir) -> (MetaStore, String) {
    let path = dir.path().join("m.db");
    let uri = format!("sqlite:///{}", path.display());
    (
        MetaStore::open(&StoreConfig::new(&uri)).await.unwrap(),
        format!("sqlite://{}", path.display()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_created_checked_changed_and_deleted_with_events() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(&dir).await;
    let admin = users::create_user(&store, "local:root", "admin", "first-password", true)
        .await
        .unwrap();
    assert_eq!((admin.id, admin.is_admin), (1, true));
    let alice = users::create_user(&store, "user:admin", "alice", "alice-password", false)
        .await
        .unwrap();
    assert_eq!(alice.id, 2);
    let again = users::create_user(&store, "user:admin", "alice", "other-password", false).await;
    assert_eq!(again.unwrap_err().kind(), StoreErrorKind::AlreadyExists);
    for bad in ["", "a:b", "tab\there"] {
        let refused =
            users::create_user(&store, "user:admin", bad, "long-enough-password", false).await;
        assert_eq!(
            refused.unwrap_err().kind(),
            StoreErrorKind::InvalidParameter
        );
    }
    let short = users::create_user(&store, "user:admin", "carol", "short", false).await;
    assert_eq!(short.unwrap_err().kind(), StoreErrorKind::InvalidParameter);

    let checked = users::check_password(&store, "alice", "alice-password").await;
    assert_eq!(checked.unwrap(), Some(alice.clone()));
    assert_eq!(
        users::check_password(&store, "alice", "wrong-password")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        users::check_password(&store, "nobody", "alice-password")
            .await
            .unwrap(),
        None
    );

    users::update_password(&store, "user:alice", "alice", "new-password-2")
        .await
        .unwrap();
    assert_eq!(
        users::check_password(&store, "alice", "alice-password")
            .await
            .unwrap(),
        None
    );
    assert!(users::check_password(&store, "alice", "new-password-2")
        .await
        .unwrap()
        .is_some());
    users::update_admin(&store, "user:admin", "alice", true)
        .await
        .unwrap();
    assert!(users::get_user(&store, "alice").await.unwrap().is_admin);
    users::delete_user(&store, "user:admin", "alice")
        .await
        .unwrap();
    let gone = users::get_user(&store, "alice").await.unwrap_err();
    assert_eq!(gone.kind(), StoreErrorKind::NotFound);
    assert_eq!(users::count_users(&store).await.unwrap(), 1);
    // The last admin can be neither demoted nor deleted.
    let demoted = users::update_admin(&store, "user:admin", "admin", false).await;
    assert_eq!(demoted.unwrap_err().kind(), StoreErrorKind::InvalidState);
    let deleted = users::delete_user(&store, "user:admin", "admin").await;
    assert_eq!(deleted.unwrap_err().kind(), StoreErrorKind::InvalidState);
    assert!(users::get_user(&store, "admin").await.unwrap().is_admin);

    let events = audit::list_events(&store, Some("user"), None, 100)
        .await
        .unwrap();
    let seen: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            (
                e.event.actor.clone(),
                e.event.action.clone(),
                e.event.entity_id.clone(),
            )
        })
        .collect();
    let expected = [
        ("local:root", "user.create", "admin"),
        ("user:admin", "user.create", "alice"),
        ("user:alice", "user.update_password", "alice"),
        ("user:admin", "user.update_admin", "alice"),
        ("user:admin", "user.delete", "alice"),
    ];
    assert_eq!(
        seen,
        expected
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect::<Vec<_>>()
    );
    assert!(audit::verify(&store).await.unwrap().broken.is_none());
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_hash_swapped_by_hand_fails_verification() {
    let dir = tempfile::tempdir().unwrap();
    let (store, raw) = open(&dir).await;
    users::create_user(&store, "local:root", "admin", "first-password", true)
        .await
        .unwrap();
    users::create_user(&store, "local:root", "mallory", "mallory-password", false)
        .await
        .unwrap();
    store.close().await;
    // Someone with the database file gives admin mallory's password.
    let mut conn = sqlx::sqlite::SqliteConnection::connect(&raw).await.unwrap();
    sqlx::query("UPDATE users SET password_hash = (SELECT password_hash FROM users WHERE username = 'mallory') WHERE username = 'admin'")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let uri = raw.replacen("sqlite://", "sqlite:///", 1);
    let store = MetaStore::open(&StoreConfig::new(&uri)).await.unwrap();
    let broken = audit::verify(&store)
        .await
        .unwrap()
        .broken
        .expect("detected");
    assert_eq!(
        (broken.entity_type.as_str(), broken.entity_id.as_str()),
        ("user", "admin")
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_keep_only_a_digest_and_check_expiry_and_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let (store, raw) = open(&dir).await;
    let now = mltrail_core::now_millis();
    let made = tokens::create_token(
        &store,
        "user:admin",
        "ci-pipeline",
        vec![Scope::RunsWrite, Scope::ModelsRegister],
        Some(now + 3_600_000),
    )
    .await
    .unwrap();
    assert!(made.secret.starts_with(tokens::SECRET_PREFIX));
    assert_eq!(made.secret.len(), 4 + 64);
    assert!(made.token.allows(Scope::RunsWrite));
    assert!(!made.token.allows(Scope::PredictionsRead));

    match tokens::check_secret(&store, &made.secret, now)
        .await
        .unwrap()
    {
        TokenCheck::Valid(t) => assert_eq!(t.name, "ci-pipeline"),
        other => panic!("{other:?}"),
    }
    let mut wrong = made.secret.clone();
    wrong.pop();
    wrong.push('x');
    assert_eq!(
        tokens::check_secret(&store, &wrong, now).await.unwrap(),
        TokenCheck::Unknown
    );
    assert!(matches!(
        tokens::check_secret(&store, &made.secret, now + 3_600_001)
            .await
            .unwrap(),
        TokenCheck::Expired(_)
    ));

    let taken = tokens::create_token(&store, "user:admin", "ci-pipeline", vec![Scope::Read], None);
    assert_eq!(
        taken.await.unwrap_err().kind(),
        StoreErrorKind::AlreadyExists
    );
    let refused = tokens::create_token(&store, "user:admin", "no-scope", vec![], None).await;
    assert_eq!(
        refused.unwrap_err().kind(),
        StoreErrorKind::InvalidParameter
    );
    let past = tokens::create_token(
        &store,
        "user:admin",
        "old",
        vec![Scope::Read],
        Some(now - 1),
    );
    assert_eq!(
        past.await.unwrap_err().kind(),
        StoreErrorKind::InvalidParameter
    );

    tokens::revoke_token(&store, "user:admin", "ci-pipeline")
        .await
        .unwrap();
    assert!(matches!(
        tokens::check_secret(&store, &made.secret, now)
            .await
            .unwrap(),
        TokenCheck::Revoked(_)
    ));
    let twice = tokens::revoke_token(&store, "user:admin", "ci-pipeline").await;
    assert_eq!(twice.unwrap_err().kind(), StoreErrorKind::NotFound);
    assert_eq!(tokens::list_tokens(&store).await.unwrap().len(), 1);
    assert!(audit::verify(&store).await.unwrap().broken.is_none());
    store.close().await;

    // The secret is nowhere in the database file.
    let bytes = std::fs::read(dir.path().join("m.db")).unwrap();
    let secret = made.secret.as_bytes();
    assert!(!bytes.windows(secret.len()).any(|w| w == secret));
    drop(raw);
}

/// `mltrail users create` and `mltrail tokens …` write the store beside a running server: the
/// server's writer must continue the chain from the other process's events, on both of its
/// write paths (general jobs and the coalesced tracking writes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_on_the_same_sqlite_file_continues_the_chain() {
    use mltrail_store::metrics::{Batch, NewMetric};
    use mltrail_store::runs::NewRun;
    use mltrail_store::{experiments, metrics, runs};
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = open(&dir).await;
    let (cli, _) = open(&dir).await;
    let exp = experiments::create_experiment(&server, "user:a", "e".into(), None, vec![])
        .await
        .unwrap();
    let run = runs::create_run(
        &server,
        "user:a",
        NewRun {
            experiment_id: exp,
            user_id: "a".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let run_id = mltrail_core::RunId::parse(&run.info.run_id).unwrap();
    for round in 0..3 {
        users::create_user(
            &cli,
            "local:root",
            &format!("u{round}"),
            "password-0001",
            false,
        )
        .await
        .unwrap();
        // A general job on the server after the other writer's event …
        tokens::create_token(
            &server,
            "user:a",
            &format!("t{round}"),
            vec![Scope::Read],
            None,
        )
        .await
        .unwrap();
        users::create_user(
            &cli,
            "local:root",
            &format!("v{round}"),
            "password-0001",
            false,
        )
        .await
        .unwrap();
        // … and a coalesced tracking write.
        let batch = Batch::new(
            vec![NewMetric {
                key: "m".into(),
                value: f64::from(round),
                timestamp: 1,
                step: i64::from(round),
                model_id: None,
            }],
            vec![],
            vec![],
        );
        metrics::log_batch(&server, "user:a", run_id.clone(), batch.unwrap().unwrap())
            .await
            .unwrap();
    }
    cli.close().await;
    assert!(audit::verify(&server).await.unwrap().broken.is_none());
    server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_and_roles_are_stored_audited_and_follow_their_resources() {
    use mltrail_core::{Permission, ReleaseRole, ResourceType};
    use mltrail_store::access::permissions::{self, Existing};
    let dir = tempfile::tempdir().unwrap();
    let (store, raw) = open(&dir).await;
    let bob = users::create_user(&store, "local:root", "bob", "bob-password-01", false)
        .await
        .unwrap();
    let carol = users::create_user(&store, "local:root", "carol", "carol-password-1", false)
        .await
        .unwrap();
    let grant = |who: &'static str, rt, id: &'static str, level, existing| {
        let store = store.clone();
        async move {
            permissions::grant(&store, "user:admin", who, rt, id, level, existing, false).await
        }
    };
    grant(
        "bob",
        ResourceType::Experiment,
        "7",
        Permission::Edit,
        Existing::Refuse,
    )
    .await
    .unwrap();
    // A second grant on the same resource is refused; replacing is the creator hook's way.
    let again = grant(
        "bob",
        ResourceType::Experiment,
        "7",
        Permission::Read,
        Existing::Refuse,
    )
    .await;
    assert_eq!(again.unwrap_err().kind(), StoreErrorKind::AlreadyExists);
    grant(
        "bob",
        ResourceType::Experiment,
        "7",
        Permission::Manage,
        Existing::Replace,
    )
    .await
    .unwrap();
    // NO_PERMISSIONS is not grantable here; an experiment is named by its integer id.
    let none = grant(
        "bob",
        ResourceType::Experiment,
        "8",
        Permission::NoPermissions,
        Existing::Refuse,
    )
    .await;
    assert_eq!(none.unwrap_err().kind(), StoreErrorKind::InvalidParameter);
    let named = grant(
        "bob",
        ResourceType::Experiment,
        "exp",
        Permission::Read,
        Existing::Refuse,
    )
    .await;
    assert_eq!(named.unwrap_err().kind(), StoreErrorKind::InvalidParameter);
    let nobody = grant(
        "nobody",
        ResourceType::Experiment,
        "7",
        Permission::Read,
        Existing::Refuse,
    )
    .await;
    assert_eq!(nobody.unwrap_err().kind(), StoreErrorKind::NotFound);
    grant(
        "bob",
        ResourceType::RegisteredModel,
        "churn",
        Permission::Edit,
        Existing::Refuse,
    )
    .await
    .unwrap();

    // A role with EDIT on every experiment, assigned to carol: her grants are the role's.
    let editors = permissions::create_role(&store, "user:admin", "default", "editors", None)
        .await
        .unwrap();
    let reserved =
        permissions::create_role(&store, "user:admin", "default", "__user_9__", None).await;
    assert_eq!(
        reserved.unwrap_err().kind(),
        StoreErrorKind::InvalidParameter
    );
    permissions::add_role_permission(
        &store,
        "user:admin",
        editors.id,
        ResourceType::Experiment,
        "*",
        Permission::Edit,
    )
    .await
    .unwrap();
    permissions::assign_role(&store, "user:admin", "carol", editors.id)
        .await
        .unwrap();
    let carols = permissions::grants_of(&store, carol.id).await.unwrap();
    assert_eq!(carols.len(), 1);
    assert_eq!(
        (carols[0].resource_pattern.as_str(), carols[0].permission),
        ("*", Permission::Edit)
    );
    let bobs = permissions::grants_of(&store, bob.id).await.unwrap();
    assert_eq!(bobs.len(), 2);

    // A registered model's grants follow its rename, and go when it is deleted (in the
    // registry's own transactions: no one can take the freed name in between).
    use mltrail_store::registry;
    registry::create_registered_model(&store, "user:bob", "churn".into(), String::new(), vec![])
        .await
        .unwrap();
    registry::rename_registered_model(&store, "user:bob", "churn".into(), "churn-v2".into())
        .await
        .unwrap();
    let own =
        permissions::own_grant(&store, "bob", ResourceType::RegisteredModel, "churn-v2").await;
    assert_eq!(own.unwrap(), Some(Permission::Edit));
    registry::delete_registered_model(&store, "user:bob", "churn-v2".into())
        .await
        .unwrap();
    assert_eq!(
        permissions::grants_of(&store, bob.id).await.unwrap().len(),
        1
    );
    // Experiment ids are stored in one spelling, so `05` is experiment 5.
    grant(
        "bob",
        ResourceType::Experiment,
        "05",
        Permission::Read,
        Existing::Refuse,
    )
    .await
    .unwrap();
    let own = permissions::own_grant(&store, "bob", ResourceType::Experiment, "5").await;
    assert_eq!(own.unwrap(), Some(Permission::Read));
    let negative = grant(
        "bob",
        ResourceType::Experiment,
        "-1",
        Permission::Read,
        Existing::Refuse,
    )
    .await;
    assert_eq!(
        negative.unwrap_err().kind(),
        StoreErrorKind::InvalidParameter
    );
    permissions::revoke(&store, "user:admin", "bob", ResourceType::Experiment, "+5")
        .await
        .unwrap();
    // A user's own role cannot be handed to someone else.
    let bobs_role = permissions::user_roles(&store, "bob").await.unwrap()[0].id;
    let handed = permissions::assign_role(&store, "user:admin", "carol", bobs_role).await;
    assert_eq!(handed.unwrap_err().kind(), StoreErrorKind::InvalidParameter);
    permissions::revoke(&store, "user:admin", "bob", ResourceType::Experiment, "7")
        .await
        .unwrap();
    let revoked =
        permissions::revoke(&store, "user:admin", "bob", ResourceType::Experiment, "7").await;
    assert_eq!(revoked.unwrap_err().kind(), StoreErrorKind::NotFound);

    // Release roles are part of the user's audited state.
    users::set_release_roles(
        &store,
        "user:admin",
        "carol",
        &[ReleaseRole::Deployer, ReleaseRole::Approver],
    )
    .await
    .unwrap();
    let roles = users::get_user(&store, "carol")
        .await
        .unwrap()
        .release_roles;
    assert_eq!(roles, vec![ReleaseRole::Approver, ReleaseRole::Deployer]);

    // Deleting a user takes their own role and assignments with them, each an event.
    users::delete_user(&store, "user:admin", "bob")
        .await
        .unwrap();
    users::delete_user(&store, "user:admin", "carol")
        .await
        .unwrap();
    let left = permissions::list_roles(&store).await.unwrap();
    assert_eq!(
        left.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["editors"]
    );
    assert!(permissions::role_assignments(&store, editors.id)
        .await
        .unwrap()
        .is_empty());
    let actions: Vec<String> = audit::list_events(&store, Some("role"), None, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event.action.clone())
        .collect();
    assert!(
        actions.contains(&"permission.grant".to_string()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"role.unassign".to_string()),
        "{actions:?}"
    );
    assert!(audit::verify(&store).await.unwrap().broken.is_none());
    store.close().await;

    // A permission raised by hand in the database fails verification.
    let mut conn = sqlx::sqlite::SqliteConnection::connect(&raw).await.unwrap();
    sqlx::query("UPDATE role_permissions SET permission = 'MANAGE'")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let uri = raw.replacen("sqlite://", "sqlite:///", 1);
    let store = MetaStore::open(&StoreConfig::new(&uri)).await.unwrap();
    let broken = audit::verify(&store)
        .await
        .unwrap()
        .broken
        .expect("detected");
    assert_eq!(broken.entity_type, "role");
    store.close().await;
}
