//! The scientific stack every backend's interpreter carries (numpy, pandas, scipy,
//! scikit-learn, matplotlib): it computes the right numbers, fits, and a saved figure comes
//! back as an image. `wasi_slim` has no stack by design: its tests skip, naming why.

use anyhow::{Result, ensure};

use crate::support::TestBackend;

pub(crate) async fn numpy_and_pandas_compute_the_right_numbers(b: &TestBackend) -> Result<()> {
    if !b.has_data_stack("the scientific stack") {
        return Ok(());
    }
    let bridge = b.bridge().await?;
    let out = bridge
        .ok("import numpy as np, pandas as pd\n\
             a = np.arange(1, 7, dtype=float).reshape(2, 3)\n\
             m = a @ a.T\n\
             print(m.tolist())\n\
             df = pd.DataFrame({'team': ['a', 'b', 'a', 'b', 'c'], 'score': [1, 2, 3, 6, 10]})\n\
             means = df.groupby('team')['score'].mean()\n\
             print(means.to_dict())\n\
             print(int(np.__version__.split('.')[0]), int(pd.__version__.split('.')[0]))")
        .await?;
    let lines: Vec<&str> = out.lines().collect();
    ensure!(
        lines.first() == Some(&"[[14.0, 32.0], [32.0, 77.0]]"),
        "matmul: {out}"
    );
    ensure!(
        lines.get(1) == Some(&"{'a': 2.0, 'b': 4.0, 'c': 10.0}"),
        "group-by mean: {out}"
    );
    ensure!(
        lines.get(2) == Some(&"2 3"),
        "numpy 2 and pandas 3, as on every backend: {out}"
    );
    Ok(())
}

pub(crate) async fn scipy_and_scikit_learn_fit(b: &TestBackend) -> Result<()> {
    if !b.has_data_stack("the scientific stack") {
        return Ok(());
    }
    let bridge = b.bridge().await?;
    let out = bridge
        .ok("import numpy as np\n\
             from scipy.optimize import minimize\n\
             from sklearn.linear_model import LinearRegression\n\
             r = minimize(lambda v: (v[0] - 3) ** 2 + (v[1] + 1) ** 2 + 5, x0=[0.0, 0.0])\n\
             print(r.success, round(float(r.x[0]), 4), round(float(r.x[1]), 4), round(float(r.fun), 6))\n\
             rng = np.random.default_rng(7)\n\
             X = rng.normal(size=(200, 2))\n\
             y = 2.5 * X[:, 0] - 4.0 * X[:, 1] + 1.5\n\
             fit = LinearRegression().fit(X, y)\n\
             print([round(float(c), 6) for c in fit.coef_], round(float(fit.intercept_), 6))")
        .await?;
    let lines: Vec<&str> = out.lines().collect();
    ensure!(
        lines.first() == Some(&"True 3.0 -1.0 5.0"),
        "scipy.optimize.minimize: {out}"
    );
    ensure!(
        lines.get(1) == Some(&"[2.5, -4.0] 1.5"),
        "LinearRegression: {out}"
    );
    Ok(())
}

pub(crate) async fn a_saved_figure_comes_back_as_an_image(b: &TestBackend) -> Result<()> {
    if !b.has_data_stack("the scientific stack") {
        return Ok(());
    }
    let bridge = b.bridge().await?;
    let reply = bridge
        .run(
            "import matplotlib\n\
              import matplotlib.pyplot as plt\n\
              fig, ax = plt.subplots(figsize=(3, 2))\n\
              ax.plot([0, 1, 2], [0, 1, 4], label='squares')\n\
              ax.set_title('growth')\n\
              ax.legend()\n\
              fig.savefig('/workspace/out/plot.png', dpi=50)\n\
              plt.close(fig)\n\
              print(matplotlib.get_backend().lower())",
        )
        .await?;
    ensure!(!reply.is_error, "{}", reply.text);
    // Every backend draws with the runtime's own backend (Agg's canvas; `show()` sends
    // the figures back).
    ensure!(
        reply.stdout() == "module://mcp_figures\n",
        "backend: {}",
        reply.text
    );
    let image = reply
        .content
        .iter()
        .find(|block| block["type"] == "image" && block["mimeType"] == "image/png");
    let Some(data) = image.and_then(|i| i["data"].as_str()) else {
        anyhow::bail!("no PNG image content: {:?}", reply.content);
    };
    // A real rendering of 150×100 pixels, not an empty file: base64 of the PNG signature
    // and an image header of that size.
    ensure!(data.starts_with("iVBORw0KGgo"), "not a PNG: {data:.40}");
    ensure!(
        data.len() > 1000,
        "a suspiciously small PNG: {} bytes",
        data.len()
    );
    ensure!(
        reply.file_paths() == ["/workspace/out/plot.png"],
        "{}",
        reply.structured
    );
    Ok(())
}

pub(crate) async fn matplotlib_starts_from_the_prebuilt_font_list(b: &TestBackend) -> Result<()> {
    if !b.has_data_stack("the scientific stack") {
        return Ok(());
    }
    if !b.is_container() {
        #[allow(clippy::print_stderr, reason = "the skip must be loud")]
        {
            eprintln!(
                "SKIP {}: the prebuilt font list is the container root filesystem's",
                b.name
            );
        }
        return Ok(());
    }
    let bridge = b.bridge().await?;
    // matplotlib logs which font list it used: the prebuilt one read from its cache
    // directory, or a new one made by scanning every font.
    let out = bridge
        .ok("import io, logging, os\n\
             log = io.StringIO()\n\
             logger = logging.getLogger('matplotlib.font_manager')\n\
             logger.setLevel(logging.DEBUG)\n\
             logger.addHandler(logging.StreamHandler(log))\n\
             import matplotlib, matplotlib.font_manager as fm\n\
             print(os.environ['MPLCONFIGDIR'], matplotlib.get_cachedir())\n\
             print('generated new fontManager' in log.getvalue(), \
                   'Using fontManager instance from /tmp/matplotlib/' in log.getvalue())\n\
             print(os.path.basename(fm.findfont('DejaVu Sans')))")
        .await?;
    let lines: Vec<&str> = out.lines().collect();
    ensure!(
        lines.first() == Some(&"/tmp/matplotlib /tmp/matplotlib"),
        "matplotlib's cache is not the writable scratch dir: {out}"
    );
    ensure!(
        lines.get(1) == Some(&"False True"),
        "the font list was not the prebuilt one: {out}"
    );
    ensure!(
        lines.get(2) == Some(&"DejaVuSans.ttf"),
        "no DejaVu Sans: {out}"
    );
    Ok(())
}
